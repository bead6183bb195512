//! The deploy plan document, as seed 002 writes it: YAML (or JSON, which
//! parses as the same YAML) with `comment` and `deployPlanItems`, keys
//! case-sensitive. Parsing reports every problem at once, each at its JSON
//! pointer with its line and column.
//!
//! Defaults the seed leaves open: a missing `priority` is 0, so an item
//! without one deploys after every item with a positive priority; a missing
//! `containerExecMethod` is `PARALLEL`, as for a service operation.

use std::collections::{BTreeMap, HashMap};

use granit_parser::{Event, Parser, Span};
use serde::{Deserialize, Serialize};

use crate::services::spec::label_problems;

/// Most items one plan may have (my choice).
pub const MAX_ITEMS: usize = 2_000;
/// The longest comment, in bytes.
pub const MAX_COMMENT: usize = 4 << 10;
/// The longest URL or branch name, in bytes.
pub const MAX_URL: usize = 2 << 10;
/// The deepest nesting the parser follows.
const MAX_DEPTH: usize = 16;
/// Most YAML nodes a plan document may have.
const MAX_NODES: usize = 100_000;

/// What an item does to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Deployment {
    /// Starts the service on the revision it runs (or its newest).
    Start,
    /// Stops its containers or pods.
    Stop,
    /// Restarts them.
    Restart,
    /// Builds the code package at `httpSrcUri`, then deploys it.
    HttpUploadDeploy,
    /// Builds `compileRepoBranch` of the git repository `compileRepoPath`,
    /// then deploys it.
    CompileDeploy,
}

impl Deployment {
    const ALL: [(&'static str, Deployment); 5] = [
        ("START", Deployment::Start),
        ("STOP", Deployment::Stop),
        ("RESTART", Deployment::Restart),
        ("HTTP_UPLOAD_DEPLOY", Deployment::HttpUploadDeploy),
        ("COMPILE_DEPLOY", Deployment::CompileDeploy),
    ];

    /// Its name, as the plan writes it.
    pub fn as_str(self) -> &'static str {
        Deployment::ALL
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("", |(name, _)| name)
    }
}

/// How an item goes over the service's containers or pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecMethod {
    /// All at once.
    #[default]
    Parallel,
    /// One at a time, each healthy before the next.
    Sequential,
}

/// One service of a plan, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    /// The service.
    pub service_id: u64,
    /// Higher goes first; equal priorities deploy at the same time.
    pub priority: i32,
    /// What is done to the service.
    pub deployment: Deployment,
    /// Parallel or sequential over its containers.
    pub container_exec_method: ExecMethod,
    /// Labels put on what is deployed, as written (comma-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_label: Option<String>,
    /// The code package of an `HTTP_UPLOAD_DEPLOY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_src_uri: Option<String>,
    /// The git repository of a `COMPILE_DEPLOY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_repo_path: Option<String>,
    /// Its branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_repo_branch: Option<String>,
}

impl PlanItem {
    /// The labels `deployLabel` puts on what is deployed: each `key` or
    /// `key=value` (a bare key has an empty value).
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels(self.deploy_label.as_deref().unwrap_or_default())
    }
}

fn labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|label| match label.split_once('=') {
            Some((key, value)) => (key.trim().to_string(), value.trim().to_string()),
            None => (label.to_string(), String::new()),
        })
        .collect()
}

/// A plan: its comment and items, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    /// What the plan is for; may be empty.
    pub comment: String,
    /// Its services.
    pub deploy_plan_items: Vec<PlanItem>,
}

/// A problem in a plan: its pointer, what is wrong, and where in the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Problem {
    /// JSON pointer into the plan.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

/// A parsed YAML node and where it starts.
#[derive(Debug)]
struct Node {
    value: Value,
    line: u32,
    column: u32,
}

#[derive(Debug)]
enum Value {
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    /// A scalar's text and whether it was written plain (unquoted).
    Scalar(String, bool),
}

fn at(span: &Span) -> (u32, u32) {
    (span.start.line() as u32, span.start.col() as u32 + 1)
}

/// Reads one YAML document into nodes; a syntax error, an alias, a second
/// document, nesting past [`MAX_DEPTH`] or more than [`MAX_NODES`] nodes
/// is the one problem.
fn read(text: &str) -> Result<Option<Node>, Problem> {
    let fail = |line, column, message: String| Problem {
        path: String::new(),
        message,
        line,
        column,
    };
    // Open collections: a mapping's or sequence's node, and for a mapping
    // the key waiting for its value.
    let mut open: Vec<(Node, Option<Node>)> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    let mut nodes = 0;
    for next in Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| {
            fail(
                e.marker().line() as u32,
                e.marker().col() as u32 + 1,
                format!("the plan is not YAML: {}", e.info()),
            )
        })?;
        let (line, column) = at(&span);
        let node = |value| Node {
            value,
            line,
            column,
        };
        let done = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(fail(line, column, "a plan is one YAML document".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(fail(
                    line,
                    column,
                    "a plan has no aliases (`*name`): write the value out".into(),
                ));
            }
            Event::Scalar(text, style, ..) => node(Value::Scalar(
                text.into_owned(),
                style == granit_parser::ScalarStyle::Plain,
            )),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if open.len() >= MAX_DEPTH {
                    return Err(fail(
                        line,
                        column,
                        format!("a plan nests at most {MAX_DEPTH} levels"),
                    ));
                }
                let value = match event {
                    Event::SequenceStart(..) => Value::Seq(Vec::new()),
                    _ => Value::Map(Vec::new()),
                };
                open.push((node(value), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match open.pop() {
                Some((node, _)) => node,
                None => continue,
            },
            _ => continue,
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(fail(
                line,
                column,
                format!("a plan has at most {MAX_NODES} YAML nodes"),
            ));
        }
        match open.last_mut() {
            None => root = Some(done),
            Some((parent, key)) => match &mut parent.value {
                Value::Seq(items) => items.push(done),
                Value::Map(entries) => match key.take() {
                    None => *key = Some(done),
                    Some(k) => entries.push((k, done)),
                },
                Value::Scalar(..) => {}
            },
        }
    }
    Ok(root)
}

/// Collects problems, each at a pointer and a node's position.
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            line: node.line,
            column: node.column,
        });
    }
}

/// A YAML 1.2 core-schema null: empty, `~` or `null`, written plain.
fn is_null(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar(text, true) if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

fn kind(node: &Node) -> &'static str {
    match &node.value {
        Value::Map(_) => "a mapping",
        Value::Seq(_) => "a list",
        Value::Scalar(..) if is_null(node) => "empty",
        Value::Scalar(_, true) => "a plain value",
        Value::Scalar(_, false) => "a quoted string",
    }
}

/// The text of a scalar that is not null.
fn scalar(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar(text, _) if !is_null(node) => Some(text),
        _ => None,
    }
}

/// A plain integer scalar (as YAML's core schema reads one).
fn integer(node: &Node) -> Option<i64> {
    match &node.value {
        Value::Scalar(text, true) => text.strip_prefix('+').unwrap_or(text).parse().ok(),
        _ => None,
    }
}

/// The entries of a mapping by key, each key once; problems for keys that
/// are not strings, repeated or not in `allowed`.
fn entries<'a>(
    map: &'a [(Node, Node)],
    path: &str,
    allowed: &[&str],
    problems: &mut Problems,
) -> HashMap<&'a str, &'a Node> {
    let mut found = HashMap::new();
    for (key, value) in map {
        let Some(name) = scalar(key) else {
            problems.add(path, key, format!("a key is a string, not {}", kind(key)));
            continue;
        };
        let at = format!("{path}/{}", slipway_flow::pointer::escape(name));
        if !allowed.contains(&name) {
            let same = allowed.iter().find(|a| a.eq_ignore_ascii_case(name));
            let hint = match same {
                Some(same) => format!(" (keys are case-sensitive: `{same}`)"),
                None => String::new(),
            };
            problems.add(
                &at,
                key,
                format!(
                    "unknown key `{name}`{hint}; the keys here are {}",
                    allowed.join(", ")
                ),
            );
            continue;
        }
        if found.insert(name, value).is_some() {
            problems.add(&at, key, format!("`{name}` is given twice"));
        }
    }
    found
}

const PLAN_KEYS: [&str; 2] = ["comment", "deployPlanItems"];
const ITEM_KEYS: [&str; 8] = [
    "serviceId",
    "priority",
    "deployment",
    "containerExecMethod",
    "deployLabel",
    "httpSrcUri",
    "compileRepoPath",
    "compileRepoBranch",
];

/// What a plan is checked against beyond its text.
pub trait Checks {
    /// Whether service `id` is one of the caller's organisation's.
    fn owns(&self, id: u64) -> bool;
    /// Why code may not be fetched from `url`, if it may not.
    fn source(&self, url: &str) -> Result<(), String>;
}

/// Parses a plan, reporting every problem at once.
pub fn parse(text: &str, checks: &impl Checks) -> Result<PlanDocument, Vec<Problem>> {
    let root = read(text).map_err(|p| vec![p])?;
    let mut problems = Problems(Vec::new());
    let Some(root) = root.filter(|r| !is_null(r)) else {
        return Err(vec![Problem {
            path: String::new(),
            message: "the plan is empty: it has `comment` and `deployPlanItems`".into(),
            line: 1,
            column: 1,
        }]);
    };
    let Value::Map(map) = &root.value else {
        problems.add(
            "",
            &root,
            format!(
                "a plan is a mapping of `comment` and `deployPlanItems`, not {}",
                kind(&root)
            ),
        );
        return Err(problems.0);
    };
    let found = entries(map, "", &PLAN_KEYS, &mut problems);
    let comment = match found.get("comment") {
        None => String::new(),
        Some(node) if is_null(node) => String::new(),
        Some(node) => match scalar(node) {
            Some(text) if text.len() > MAX_COMMENT => {
                problems.add(
                    "/comment",
                    node,
                    format!("a comment is at most {MAX_COMMENT} bytes"),
                );
                String::new()
            }
            Some(text) => text.to_string(),
            None => {
                problems.add(
                    "/comment",
                    node,
                    format!("`comment` is text, not {}", kind(node)),
                );
                String::new()
            }
        },
    };
    let mut items = Vec::new();
    match found.get("deployPlanItems") {
        None => problems.add(
            "/deployPlanItems",
            &root,
            "`deployPlanItems` is required: the services the plan deploys",
        ),
        Some(node) => match &node.value {
            Value::Seq(list) if list.is_empty() => problems.add(
                "/deployPlanItems",
                node,
                "a plan deploys at least one service",
            ),
            Value::Seq(list) if list.len() > MAX_ITEMS => problems.add(
                "/deployPlanItems",
                node,
                format!(
                    "a plan has at most {MAX_ITEMS} items, this one has {}",
                    list.len()
                ),
            ),
            Value::Seq(list) => {
                for (i, node) in list.iter().enumerate() {
                    let path = format!("/deployPlanItems/{i}");
                    if let Some((item, at)) = parse_item(node, &path, checks, &mut problems) {
                        items.push((item, path, at));
                    }
                }
            }
            _ => problems.add(
                "/deployPlanItems",
                node,
                format!("`deployPlanItems` is a list of items, not {}", kind(node)),
            ),
        },
    }
    // Items of one wave deploy at the same time: one service once per wave.
    let mut waves: HashMap<(i32, u64), &str> = HashMap::new();
    for (item, path, (line, column)) in &items {
        if let Some(first) = waves.insert((item.priority, item.service_id), path) {
            problems.0.push(Problem {
                path: format!("{path}/serviceId"),
                message: format!(
                    "service {} is also at {first} with priority {}: the items of one priority deploy at the same time, so a service is in each at most once",
                    item.service_id, item.priority
                ),
                line: *line,
                column: *column,
            });
        }
    }
    if !problems.0.is_empty() {
        problems
            .0
            .sort_by_key(|p| (p.line, p.column, p.path.clone()));
        return Err(problems.0);
    }
    Ok(PlanDocument {
        comment,
        deploy_plan_items: items.into_iter().map(|(item, ..)| item).collect(),
    })
}

/// One item and where its `serviceId` is, or `None` when it has problems
/// (added to `problems`).
fn parse_item(
    node: &Node,
    path: &str,
    checks: &impl Checks,
    problems: &mut Problems,
) -> Option<(PlanItem, (u32, u32))> {
    let before = problems.0.len();
    let Value::Map(map) = &node.value else {
        problems.add(
            path,
            node,
            format!(
                "an item is a mapping with `serviceId` and `deployment`, not {}",
                kind(node)
            ),
        );
        return None;
    };
    let found = entries(map, path, &ITEM_KEYS, problems);
    let field = |name: &str| found.get(name).copied().filter(|n| !is_null(n));
    let pointer = |name: &str| format!("{path}/{name}");

    let service_id = match field("serviceId") {
        None => {
            problems.add(
                &pointer("serviceId"),
                node,
                "`serviceId` is required: the id of the service to deploy",
            );
            None
        }
        Some(id) => match integer(id).filter(|n| *n > 0) {
            None => {
                problems.add(
                    &pointer("serviceId"),
                    id,
                    format!(
                        "`serviceId` is a service's id, a positive whole number, not {}",
                        scalar(id).map_or_else(|| kind(id).to_string(), |t| format!("`{t}`"))
                    ),
                );
                None
            }
            Some(n) if !checks.owns(n as u64) => {
                problems.add(
                    &pointer("serviceId"),
                    id,
                    format!("the organisation has no service {n}"),
                );
                None
            }
            Some(n) => Some(n as u64),
        },
    };

    let priority = match field("priority") {
        None => 0,
        Some(p) => match integer(p).and_then(|n| i32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                problems.add(
                    &pointer("priority"),
                    p,
                    format!(
                        "`priority` is a whole number from {} to {}, higher first",
                        i32::MIN,
                        i32::MAX
                    ),
                );
                0
            }
        },
    };

    let allowed = Deployment::ALL.map(|(name, _)| name).join(", ");
    let deployment = match field("deployment") {
        None => {
            problems.add(
                &pointer("deployment"),
                node,
                format!("`deployment` is required: one of {allowed}"),
            );
            None
        }
        Some(d) => {
            let name = scalar(d).unwrap_or_default();
            let found = Deployment::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| *d);
            if found.is_none() {
                problems.add(
                    &pointer("deployment"),
                    d,
                    format!(
                        "`deployment` is one of {allowed}, written exactly so, not `{}`",
                        name
                    ),
                );
            }
            found
        }
    };

    let container_exec_method = match field("containerExecMethod") {
        None => ExecMethod::Parallel,
        Some(m) => match scalar(m) {
            Some("PARALLEL") => ExecMethod::Parallel,
            Some("SEQUENTIAL") => ExecMethod::Sequential,
            other => {
                problems.add(
                    &pointer("containerExecMethod"),
                    m,
                    format!(
                        "`containerExecMethod` is PARALLEL or SEQUENTIAL, written exactly so, not `{}`",
                        other.unwrap_or_default()
                    ),
                );
                ExecMethod::Parallel
            }
        },
    };

    let string = |name: &str, problems: &mut Problems| -> Option<String> {
        let node = field(name)?;
        match scalar(node) {
            Some(t) if t.len() <= MAX_URL => Some(t.to_string()),
            Some(_) => {
                problems.add(
                    &pointer(name),
                    node,
                    format!("`{name}` is at most {MAX_URL} bytes"),
                );
                None
            }
            None => {
                problems.add(
                    &pointer(name),
                    node,
                    format!("`{name}` is text, not {}", kind(node)),
                );
                None
            }
        }
    };
    let deploy_label = string("deployLabel", problems);
    if let (Some(label), Some(node)) = (&deploy_label, field("deployLabel")) {
        let empty = label
            .split(',')
            .any(|l| l.trim().is_empty() || l.trim().starts_with('='));
        let keys = labels(label);
        if empty {
            problems.add(&pointer("deployLabel"), node, "`deployLabel` is labels separated by commas, each `key` or `key=value`; one is empty");
        }
        for problem in label_problems(&keys, &pointer("deployLabel")) {
            problems.add(&pointer("deployLabel"), node, problem.message);
        }
    }
    let http_src_uri = string("httpSrcUri", problems);
    let compile_repo_path = string("compileRepoPath", problems);
    let compile_repo_branch = string("compileRepoBranch", problems);
    match deployment {
        Some(Deployment::HttpUploadDeploy) => match (&http_src_uri, field("httpSrcUri")) {
            (None, None) => problems.add(
                &pointer("httpSrcUri"),
                node,
                "`httpSrcUri` is required when `deployment` is HTTP_UPLOAD_DEPLOY: the URL of the code package (zip or tar.gz)",
            ),
            (Some(uri), Some(at)) => {
                if let Err(why) = http_url(uri).and_then(|()| checks.source(uri)) {
                    problems.add(&pointer("httpSrcUri"), at, why);
                }
            }
            _ => {}
        },
        Some(Deployment::CompileDeploy) => {
            match (&compile_repo_path, field("compileRepoPath")) {
                (None, None) => problems.add(
                    &pointer("compileRepoPath"),
                    node,
                    "`compileRepoPath` is required when `deployment` is COMPILE_DEPLOY: the URL of the git repository",
                ),
                (Some(uri), Some(at)) => {
                    if let Err(why) = http_url(uri).and_then(|()| checks.source(uri)) {
                        problems.add(&pointer("compileRepoPath"), at, why);
                    }
                }
                _ => {}
            }
            match (&compile_repo_branch, field("compileRepoBranch")) {
                (None, None) => problems.add(
                    &pointer("compileRepoBranch"),
                    node,
                    "`compileRepoBranch` is required when `deployment` is COMPILE_DEPLOY: the branch to build",
                ),
                (Some(branch), Some(at)) if !is_branch(branch) => problems.add(
                    &pointer("compileRepoBranch"),
                    at,
                    format!("`{branch}` is not a git branch name"),
                ),
                _ => {}
            }
        }
        _ => {}
    }
    if problems.0.len() > before {
        return None;
    }
    let at = field("serviceId").map_or((node.line, node.column), |n| (n.line, n.column));
    let item = PlanItem {
        service_id: service_id?,
        priority,
        deployment: deployment?,
        container_exec_method,
        deploy_label,
        http_src_uri,
        compile_repo_path,
        compile_repo_branch,
    };
    Some((item, at))
}

/// Checks that `uri` is an `http` or `https` URL with a host and no
/// credentials.
fn http_url(uri: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(uri).map_err(|e| format!("`{uri}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{uri}` is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{uri}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{uri}` holds credentials: a plan is readable by the whole organisation"
        ));
    }
    Ok(())
}

/// Whether `name` is a branch name git accepts (`git check-ref-format`).
fn is_branch(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.contains("/.")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests;
