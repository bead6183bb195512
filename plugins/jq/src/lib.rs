//! jq expressions for Slipway's node types, on the jaq interpreter: compile
//! once with errors that say where, then run on JSON bytes.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

type Data = data::JustLut<Val>;

/// Common filters (`type`, `keys`, `add`, `min`, ...) defined in jq itself.
const PRELUDE: &str = include_str!("prelude.jq");

/// A compiled jq program.
pub struct Program {
    filter: jaq_core::compile::Filter<jaq_core::Native<Data>>,
}

impl Program {
    /// Compiles `expression` with the prelude definitions it uses.
    pub fn compile(expression: &str) -> Result<Program, String> {
        Program::compile_with(&prelude_for(expression), expression)
    }

    /// Compiles `expression` with `definitions` (jq `def`s, e.g. from
    /// [`prelude_for`]); errors point into the expression.
    pub fn compile_with(definitions: &str, expression: &str) -> Result<Program, String> {
        let defs = jaq_core::load::parse(definitions, |p| p.defs())
            .ok_or_else(|| "the definitions do not parse".to_string())?;
        let funs = jaq_core::funs()
            .chain(jaq_std::base_funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(
                &arena,
                File {
                    code: expression,
                    path: (),
                },
            )
            .map_err(|errors| load_error(expression, errors))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let (name, undefined) = errors
                    .into_iter()
                    .flat_map(|(_, errs)| errs)
                    .next()
                    .expect("compile errors are not empty");
                format!(
                    "undefined {} `{name}` at character {}",
                    undefined.as_str(),
                    offset(expression, name) + 1
                )
            })?;
        Ok(Program { filter })
    }

    /// Runs on one JSON input; every output as JSON text, or the first error.
    pub fn run(&self, input: &[u8]) -> Result<Vec<String>, String> {
        let input = parse_input(input)?;
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(|r| {
                unwrap_valr(r)
                    .map(|v| v.to_string())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Whether the first output on this JSON input is truthy (neither `false`
    /// nor `null`). No output counts as false.
    pub fn test(&self, input: &[u8]) -> Result<bool, String> {
        let input = parse_input(input)?;
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        match self.filter.id.run((ctx, input)).map(unwrap_valr).next() {
            None => Ok(false),
            Some(Ok(v)) => Ok(!matches!(v, Val::Null | Val::Bool(false))),
            Some(Err(e)) => Err(e.to_string()),
        }
    }
}

fn parse_input(input: &[u8]) -> Result<Val, String> {
    jaq_json::read::parse_single(input).map_err(|e| format!("the input is not JSON: {e}"))
}

/// One prelude definition: its name and text.
struct Definition {
    name: &'static str,
    text: &'static str,
}

/// The prelude split into definitions, in order.
fn definitions() -> Vec<Definition> {
    let mut defs: Vec<Definition> = Vec::new();
    let mut start = None;
    let mut offset = 0;
    for line in PRELUDE.split_inclusive('\n') {
        let is_start = line.starts_with("def ");
        let is_continuation = line.starts_with(' ');
        if let Some(begin) = start
            && !is_continuation
        {
            defs.push(definition(&PRELUDE[begin..offset]));
            start = None;
        }
        if is_start {
            start = Some(offset);
        }
        offset += line.len();
    }
    if let Some(begin) = start {
        defs.push(definition(&PRELUDE[begin..]));
    }
    defs
}

fn definition(text: &'static str) -> Definition {
    let name = text["def ".len()..]
        .split([':', '('])
        .next()
        .unwrap_or_default()
        .trim();
    Definition { name, text }
}

/// The names a piece of jq mentions: identifiers and `@formats`.
fn mentions(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@'))
        .filter(|w| !w.is_empty())
}

/// The prelude definitions `expression` uses, directly or through other
/// definitions, as jq text in prelude order. Compiling only these keeps a
/// compile to a few microseconds.
pub fn prelude_for(expression: &str) -> String {
    let defs = definitions();
    let mut wanted: Vec<&str> = mentions(expression).collect();
    let mut used = vec![false; defs.len()];
    // Later definitions use earlier ones only: one pass from the end suffices.
    for (i, def) in defs.iter().enumerate().rev() {
        if wanted.contains(&def.name) {
            used[i] = true;
            let body = def.text.split_once(':').map_or("", |(_, body)| body);
            wanted.extend(mentions(body));
            // The name itself (recursion, other arities) is already wanted.
        }
    }
    defs.iter()
        .zip(used)
        .filter(|(_, used)| *used)
        .map(|(def, _)| def.text)
        .collect()
}

/// Where `part` (a slice of `code`) starts, in characters.
fn offset(code: &str, part: &str) -> usize {
    let start = (part.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
    code.get(..start.min(code.len()))
        .map_or(0, |before| before.chars().count())
}

fn load_error(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let Some((_, error)) = errors.into_iter().next() else {
        return "cannot load the expression".into();
    };
    match error {
        Error::Io(errs) => errs.first().map(|(_, e)| e.clone()).unwrap_or_default(),
        Error::Lex(errs) => match errs.first() {
            Some((expect, at)) => format!(
                "expected {} at character {}",
                expect.as_str(),
                offset(code, at) + 1
            ),
            None => "cannot read the expression".into(),
        },
        Error::Parse(errs) => match errs.first() {
            Some((expect, "")) => {
                format!("expected {} at the end", expect.as_str())
            }
            Some((expect, at)) => format!(
                "expected {} at character {}",
                expect.as_str(),
                offset(code, at) + 1
            ),
            None => "cannot parse the expression".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_mapping() {
        let p =
            Program::compile("{name: .user.name, total: (.items | map(.price) | add)}").unwrap();
        let out = p
            .run(br#"{"user": {"name": "ada"}, "items": [{"price": 2}, {"price": 3}]}"#)
            .unwrap();
        assert_eq!(out, vec![r#"{"name":"ada","total":5}"#]);
    }

    #[test]
    fn compile_errors_say_where() {
        assert_eq!(
            Program::compile(".a | nosuch(1)").err().unwrap(),
            "undefined filter `nosuch` at character 6"
        );
        let err = Program::compile("{a: }").err().unwrap();
        assert!(err.starts_with("expected "), "{err}");
    }

    #[test]
    fn test_is_jq_truthiness() {
        let p = Program::compile(".n > 2").unwrap();
        assert!(p.test(br#"{"n": 3}"#).unwrap());
        assert!(!p.test(br#"{"n": 1}"#).unwrap());
        assert!(!Program::compile("empty").unwrap().test(b"1").unwrap());
    }

    #[test]
    fn common_filters_are_there() {
        let p = Program::compile(
            "[(.xs | map(select(. > 1)) | length), (.s | ascii_downcase), (.xs | sort | first), (.o | keys), (.o | to_entries | length), (.n | floor), (.s | split(\"B\"))]",
        );
        let p = match p {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let out = p.run(br#"{"xs": [3, 1, 2], "s": "aBc", "o": {"b": 1, "a": 2}, "n": 2.5}"#);
        assert_eq!(out.unwrap(), vec![r#"[2,"abc",1,["a","b"],2,2,["a","c"]]"#]);
    }

    #[test]
    fn only_the_definitions_used_are_compiled() {
        let prelude = prelude_for("[.[] | select(.n > 1)] | map(.n) | add");
        let names: Vec<&str> = prelude
            .lines()
            .map(|l| l.split([':', '(']).next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "def empty",
                "def null",
                "def select",
                "def map",
                "def add",
                "def add"
            ]
        );
        assert_eq!(prelude_for(".a + 1"), "");
    }

    #[test]
    fn every_prelude_definition_compiles() {
        for def in definitions() {
            let expression = format!("[{}]", def.name);
            // Some definitions take arguments; calling them bare is an arity error, not a missing one.
            if let Err(e) = Program::compile(&expression) {
                assert!(e.starts_with("undefined filter"), "{}: {e}", def.name);
            }
        }
        let all: String = definitions().iter().map(|d| d.text).collect();
        Program::compile_with(&all, ".").expect("the whole prelude compiles");
    }

    #[test]
    fn runtime_errors_are_reported() {
        let p = Program::compile(".a + 1").unwrap();
        assert!(p.run(br#"{"a": "x"}"#).is_err());
        assert!(
            p.run(b"not json")
                .unwrap_err()
                .starts_with("the input is not JSON")
        );
    }
}
