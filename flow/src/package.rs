//! The packaging stage: validate a canvas, resolve its subflows at their
//! pinned versions, and translate every node through its plugin into the flow
//! document the engine runs. Every problem is reported at once, each with a
//! JSON pointer into the canvas.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use semver::VersionReq;
use slipway_runtime::kinds::Diagnostic;
use slipway_runtime::{CallContext, Catalog, Kind, Plugin, ResolveError};

use crate::ERROR_PORT;
use crate::canvas::{Canvas, SubflowRef};
use crate::document::{FlowDocument, FlowEdge, FlowNode, PluginRef};

/// What looking up a subflow's canvas found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The canvas of that version.
    Found(Canvas),
    /// No integration of that name.
    NoIntegration,
    /// The integration exists, the version does not.
    NoVersion {
        /// Its newest version, if any.
        latest: Option<u32>,
    },
    /// It could not be read (the database failed): why.
    Unreadable(String),
}

/// Where subflows' canvases come from (the store, or a map in tests).
pub trait Canvases: Sync {
    /// The canvas of `integration` at `version`.
    fn lookup(&self, integration: &str, version: u32) -> Lookup;
}

/// Where node types come from: a catalog, or an organisation's view of
/// its own plugins and the built-in ones.
pub trait NodeTypes: Sync {
    /// The node type `name` at the highest version matching `requirement`.
    fn resolve(&self, name: &str, requirement: &VersionReq) -> Result<Arc<Plugin>, ResolveError>;

    /// Whom the plugins' calls are for (see [`CallContext::tenant`]).
    fn tenant(&self) -> Option<u64> {
        None
    }
}

impl NodeTypes for Catalog {
    fn resolve(&self, name: &str, requirement: &VersionReq) -> Result<Arc<Plugin>, ResolveError> {
        Catalog::resolve(self, Kind::NodeType, name, requirement)
    }
}

/// Packages canvases with the node types and canvases given.
pub struct Packager<'a> {
    node_types: &'a dyn NodeTypes,
    canvases: &'a dyn Canvases,
}

/// A subflow as its parent sees it: where messages enter and leave.
struct Checked {
    nodes: Vec<FlowNode>,
    edges: Vec<FlowEdge>,
    /// Output ports nothing inside connects: a subflow's exits.
    open_outputs: Vec<(String, String)>,
    /// Nodes nothing inside feeds: a subflow's entries.
    entries: Vec<String>,
    plugins: BTreeSet<PluginRef>,
    subflows: BTreeSet<SubflowRef>,
}

/// What a canvas node became: a plugin node or a flattened subflow.
enum Placed {
    Plugin {
        id: String,
        outputs: Vec<String>,
        trigger: bool,
    },
    Subflow {
        entry: String,
        exits: Vec<(String, String)>,
    },
}

/// Deepest nesting of subflows: a subflow's subflow is at depth 2.
pub const MAX_SUBFLOW_DEPTH: usize = 16;
/// Most nodes a flow may have once its subflows are expanded.
pub const MAX_FLOW_NODES: usize = 10_000;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'a> Packager<'a> {
    /// A packager over these node types and canvases.
    pub fn new(node_types: &'a dyn NodeTypes, canvases: &'a dyn Canvases) -> Self {
        Packager {
            node_types,
            canvases,
        }
    }

    /// Packages `canvas`, the canvas of `integration`.
    pub async fn package(
        &self,
        integration: &SubflowRef,
        canvas: &Canvas,
    ) -> Result<FlowDocument, Vec<Diagnostic>> {
        self.bound(integration, canvas).map_err(|d| vec![d])?;
        let checked = self
            .check(canvas, String::new(), vec![integration.clone()])
            .await?;
        Ok(FlowDocument {
            integration: integration.clone(),
            nodes: checked.nodes,
            edges: checked.edges,
            plugins: checked.plugins.into_iter().collect(),
            subflows: checked.subflows.into_iter().collect(),
        })
    }

    /// Checks the canvas's size, and its size with every subflow expanded,
    /// before any plugin runs: a flow past the limits is refused at once.
    fn bound(&self, root: &SubflowRef, canvas: &Canvas) -> Result<(), Diagnostic> {
        if let Some((path, problem)) = canvas.oversized() {
            return Err(at(path, problem));
        }
        let mut sizes = HashMap::new();
        let mut total = 0;
        for (i, node) in canvas.nodes.iter().enumerate() {
            total += match &node.subflow {
                None => 1,
                Some(sub) => {
                    let mut chain = vec![root.clone()];
                    self.expanded(sub, &mut chain, &mut sizes)
                        .map_err(|problem| at(format!("/nodes/{i}/subflow"), problem))?
                }
            };
            if total > MAX_FLOW_NODES {
                return Err(at(
                    format!("/nodes/{i}"),
                    format!(
                        "with its subflows expanded the flow has more than {MAX_FLOW_NODES} nodes"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How many nodes subflow `sub` expands to, or why it is too big;
    /// `chain` is the integrations above it. A cycle or a missing canvas
    /// counts nothing here: [`Self::check`] reports it.
    fn expanded(
        &self,
        sub: &SubflowRef,
        chain: &mut Vec<SubflowRef>,
        sizes: &mut HashMap<SubflowRef, usize>,
    ) -> Result<usize, String> {
        if let Some(&size) = sizes.get(sub) {
            return Ok(size);
        }
        if chain.contains(sub) {
            return Ok(0);
        }
        chain.push(sub.clone());
        if chain.len() > MAX_SUBFLOW_DEPTH + 1 {
            let names: Vec<String> = chain.iter().map(ToString::to_string).collect();
            return Err(format!(
                "subflows nest deeper than {MAX_SUBFLOW_DEPTH} levels: {}",
                names.join(" → ")
            ));
        }
        let Lookup::Found(canvas) = self.canvases.lookup(&sub.integration, sub.version) else {
            chain.pop();
            return Ok(0);
        };
        if let Some((path, problem)) = canvas.oversized() {
            return Err(format!("in subflow {sub} at {path}: {problem}"));
        }
        let mut size = 0;
        for node in &canvas.nodes {
            size += match &node.subflow {
                None => 1,
                Some(inner) => self.expanded(inner, chain, sizes)?,
            };
            if size > MAX_FLOW_NODES {
                return Err(format!(
                    "subflow {sub} expands to more than {MAX_FLOW_NODES} nodes"
                ));
            }
        }
        chain.pop();
        sizes.insert(sub.clone(), size);
        Ok(size)
    }

    /// Checks and translates one canvas; `prefix` goes before its node ids,
    /// `chain` is the integrations above it (the first is the root).
    fn check<'s>(
        &'s self,
        canvas: &'s Canvas,
        prefix: String,
        chain: Vec<SubflowRef>,
    ) -> Boxed<'s, Result<Checked, Vec<Diagnostic>>> {
        Box::pin(async move {
            let root = chain.len() == 1;
            let mut problems = Vec::new();
            let mut out = Checked {
                nodes: Vec::new(),
                edges: Vec::new(),
                open_outputs: Vec::new(),
                entries: Vec::new(),
                plugins: BTreeSet::new(),
                subflows: BTreeSet::new(),
            };
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, node) in canvas.nodes.iter().enumerate() {
                if !valid_id(&node.id) {
                    problems.push(at(
                        format!("/nodes/{i}/id"),
                        format!(
                            "invalid id `{}`: use 1 to 64 letters, digits, `-` and `_`",
                            node.id
                        ),
                    ));
                } else if let Some(first) = seen.insert(&node.id, i) {
                    problems.push(at(
                        format!("/nodes/{i}/id"),
                        format!("duplicate id `{}` (also /nodes/{first})", node.id),
                    ));
                }
            }

            let context = CallContext {
                tenant: self.node_types.tenant(),
                ..CallContext::default()
            };
            let mut placed: BTreeMap<&str, Placed> = BTreeMap::new();
            for (i, node) in canvas.nodes.iter().enumerate() {
                let full_id = format!("{prefix}{}", node.id);
                match (&node.node_type, &node.subflow) {
                    (Some(spec), None) => {
                        let Some(plugin) = self.resolve(spec, i, &mut problems) else {
                            continue;
                        };
                        let config = node.config.clone().unwrap_or_else(|| serde_json::json!({}));
                        let base = format!("/nodes/{i}/config");
                        let translated = match plugin.validate(&context, &config).await {
                            Ok(found) if !found.is_empty() => {
                                problems.extend(
                                    found
                                        .into_iter()
                                        .map(|d| at(format!("{base}{}", d.path), d.message)),
                                );
                                continue;
                            }
                            Ok(_) => plugin.translate(&context, &config).await,
                            Err(e) => Err(e),
                        };
                        let translation = match translated {
                            Ok(Ok(t)) => t,
                            Ok(Err(found)) => {
                                problems.extend(
                                    found
                                        .into_iter()
                                        .map(|d| at(format!("{base}{}", d.path), d.message)),
                                );
                                continue;
                            }
                            Err(e) => {
                                problems.push(at(format!("/nodes/{i}/type"), e.to_string()));
                                continue;
                            }
                        };
                        let slipway_runtime::Description::Node(info) = plugin.description() else {
                            continue;
                        };
                        if info.trigger && !root {
                            problems.push(at(
                                format!("/nodes/{i}/type"),
                                "a subflow cannot contain a trigger: its parent starts it",
                            ));
                        }
                        let reference = PluginRef {
                            name: plugin.manifest().name.clone(),
                            version: plugin.manifest().version.to_string(),
                            sha256: plugin.sha256().to_string(),
                        };
                        out.plugins.insert(reference.clone());
                        placed.insert(
                            &node.id,
                            Placed::Plugin {
                                id: full_id.clone(),
                                outputs: translation.outputs.clone(),
                                trigger: info.trigger,
                            },
                        );
                        out.nodes.push(FlowNode {
                            id: full_id,
                            plugin: reference,
                            node: translation.node,
                            outputs: translation.outputs,
                            trigger: info.trigger,
                        });
                    }
                    (None, Some(sub)) => {
                        let path = format!("/nodes/{i}/subflow");
                        if chain.contains(sub) {
                            let cycle: Vec<String> =
                                chain.iter().chain([sub]).map(ToString::to_string).collect();
                            problems.push(at(
                                path,
                                format!("subflows form a cycle: {}", cycle.join(" → ")),
                            ));
                            continue;
                        }
                        let inner = match self.canvases.lookup(&sub.integration, sub.version) {
                            Lookup::Found(canvas) => canvas,
                            Lookup::NoIntegration => {
                                problems.push(at(
                                    format!("{path}/integration"),
                                    format!("no integration named `{}`", sub.integration),
                                ));
                                continue;
                            }
                            Lookup::Unreadable(why) => {
                                problems.push(at(
                                    format!("{path}/integration"),
                                    format!(
                                        "integration `{}` could not be read: {why}",
                                        sub.integration
                                    ),
                                ));
                                continue;
                            }
                            Lookup::NoVersion { latest } => {
                                let latest = latest.map_or("it has no versions".to_string(), |v| {
                                    format!("its latest is {v}")
                                });
                                problems.push(at(
                                    format!("{path}/version"),
                                    format!(
                                        "integration `{}` has no version {}: {latest}",
                                        sub.integration, sub.version
                                    ),
                                ));
                                continue;
                            }
                        };
                        let mut deeper = chain.clone();
                        deeper.push(sub.clone());
                        match self.check(&inner, format!("{full_id}/"), deeper).await {
                            Ok(checked) => {
                                if checked.entries.len() != 1 {
                                    problems.push(at(path, format!(
                                        "subflow {sub} needs exactly one entry node (one without incoming edges), it has {}",
                                        if checked.entries.is_empty() { "none".to_string() } else { checked.entries.join(", ") }
                                    )));
                                    continue;
                                }
                                out.subflows.insert(sub.clone());
                                out.subflows.extend(checked.subflows);
                                out.plugins.extend(checked.plugins);
                                out.nodes.extend(checked.nodes);
                                out.edges.extend(checked.edges);
                                placed.insert(
                                    &node.id,
                                    Placed::Subflow {
                                        entry: checked.entries[0].clone(),
                                        exits: checked.open_outputs,
                                    },
                                );
                            }
                            Err(inner_problems) => {
                                problems.extend(inner_problems.into_iter().map(|d| {
                                    let inside = if d.path.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" at {}", d.path)
                                    };
                                    at(
                                        path.clone(),
                                        format!("in subflow {sub}{inside}: {}", d.message),
                                    )
                                }))
                            }
                        }
                    }
                    _ => problems.push(at(
                        format!("/nodes/{i}"),
                        "a node needs either `type` or `subflow`, not both",
                    )),
                }
            }

            if root
                && !placed
                    .values()
                    .any(|p| matches!(p, Placed::Plugin { trigger: true, .. }))
                && problems.is_empty()
            {
                problems.push(at(
                    "/nodes",
                    "a flow needs a trigger node, e.g. http-trigger",
                ));
            }

            let mut connected: BTreeSet<(&str, &str)> = BTreeSet::new();
            let mut fed: BTreeSet<&str> = BTreeSet::new();
            for (j, edge) in canvas.edges.iter().enumerate() {
                let from = placed.get(edge.from.as_str());
                let to = placed.get(edge.to.as_str());
                if !seen.contains_key(edge.from.as_str()) {
                    problems.push(at(
                        format!("/edges/{j}/from"),
                        format!("no node `{}`", edge.from),
                    ));
                }
                if !seen.contains_key(edge.to.as_str()) {
                    problems.push(at(
                        format!("/edges/{j}/to"),
                        format!("no node `{}`", edge.to),
                    ));
                }
                let (Some(from), Some(to)) = (from, to) else {
                    continue;
                };
                let sources: Vec<(String, String)> = match from {
                    Placed::Plugin { id, outputs, .. } => {
                        // Every plugin node may route its failures by `error`.
                        if !outputs.contains(&edge.port) && edge.port != ERROR_PORT {
                            problems.push(at(
                                format!("/edges/{j}/port"),
                                format!(
                                    "`{}` has no output `{}` (it has: {}, and `error` for failures)",
                                    edge.from,
                                    edge.port,
                                    outputs.join(", ")
                                ),
                            ));
                            continue;
                        }
                        vec![(id.clone(), edge.port.clone())]
                    }
                    Placed::Subflow { exits, .. } => {
                        if edge.port != "out" {
                            problems.push(at(
                                format!("/edges/{j}/port"),
                                format!("a subflow has one output, `out`, not `{}`", edge.port),
                            ));
                            continue;
                        }
                        exits.clone()
                    }
                };
                let target = match to {
                    Placed::Plugin { trigger: true, .. } => {
                        problems.push(at(
                            format!("/edges/{j}/to"),
                            format!("`{}` is a trigger: nothing can flow into it", edge.to),
                        ));
                        continue;
                    }
                    Placed::Plugin { id, .. } => id.clone(),
                    Placed::Subflow { entry, .. } => entry.clone(),
                };
                connected.insert((edge.from.as_str(), edge.port.as_str()));
                fed.insert(edge.to.as_str());
                for (from, port) in sources {
                    out.edges.push(FlowEdge {
                        from,
                        port,
                        to: target.clone(),
                    });
                }
            }
            if let Some((j, cycle)) = find_cycle(canvas) {
                problems.push(at(
                    format!("/edges/{j}"),
                    format!("closes a cycle: {}", cycle.join(" → ")),
                ));
            }
            if !problems.is_empty() {
                return Err(problems);
            }

            for node in &canvas.nodes {
                let Some(place) = placed.get(node.id.as_str()) else {
                    continue;
                };
                if !fed.contains(node.id.as_str()) {
                    match place {
                        Placed::Plugin { id, .. } => out.entries.push(id.clone()),
                        Placed::Subflow { entry, .. } => out.entries.push(entry.clone()),
                    }
                }
                match place {
                    Placed::Plugin { id, outputs, .. } => {
                        for port in outputs {
                            if !connected.contains(&(node.id.as_str(), port.as_str())) {
                                out.open_outputs.push((id.clone(), port.clone()));
                            }
                        }
                    }
                    Placed::Subflow { exits, .. } => {
                        if !connected.contains(&(node.id.as_str(), "out")) {
                            out.open_outputs.extend(exits.iter().cloned());
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// The plugin for `name@requirement`, or a problem at `/nodes/{i}/type`.
    fn resolve(&self, spec: &str, i: usize, problems: &mut Vec<Diagnostic>) -> Option<Arc<Plugin>> {
        let path = format!("/nodes/{i}/type");
        let Some((name, requirement)) = spec.split_once('@') else {
            problems.push(at(
                path,
                format!("`{spec}` is not `name@version-requirement`, e.g. `transform@^1`"),
            ));
            return None;
        };
        let requirement = match semver::VersionReq::parse(requirement) {
            Ok(r) => r,
            Err(e) => {
                problems.push(at(
                    path,
                    format!("invalid version requirement `{requirement}`: {e}"),
                ));
                return None;
            }
        };
        match self.node_types.resolve(name, &requirement) {
            Ok(plugin) => Some(plugin),
            Err(e) => {
                problems.push(at(path, e.to_string()));
                None
            }
        }
    }
}

fn at(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        path: path.into(),
        message: message.into(),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The first edge that closes a cycle, and the cycle's node ids.
///
/// An iterative depth-first search: a canvas that is one long chain needs
/// no stack of its own.
fn find_cycle(canvas: &Canvas) -> Option<(usize, Vec<String>)> {
    let mut next: HashMap<&str, Vec<(usize, &str)>> = HashMap::new();
    for (j, edge) in canvas.edges.iter().enumerate() {
        next.entry(edge.from.as_str())
            .or_default()
            .push((j, edge.to.as_str()));
    }
    let mut done: HashSet<&str> = HashSet::new();
    for node in &canvas.nodes {
        if done.contains(node.id.as_str()) {
            continue;
        }
        // The nodes being visited, each with how many of its edges were
        // followed; `on_path` gives a node's place in it.
        let mut path: Vec<(&str, usize)> = vec![(&node.id, 0)];
        let mut on_path: HashMap<&str, usize> = HashMap::from([(node.id.as_str(), 0)]);
        while let Some((at, followed)) = path.last_mut() {
            let at = *at;
            let edges = next.get(at).map(Vec::as_slice).unwrap_or_default();
            let Some(&(j, to)) = edges.get(*followed) else {
                path.pop();
                on_path.remove(at);
                done.insert(at);
                continue;
            };
            *followed += 1;
            if let Some(&start) = on_path.get(to) {
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|(n, _)| n.to_string()).collect();
                cycle.push(to.to_string());
                return Some((j, cycle));
            }
            if !done.contains(to) {
                on_path.insert(to, path.len());
                path.push((to, 0));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{Edge, Node};

    fn chain(n: usize) -> Canvas {
        let node = |i: usize| Node {
            id: i.to_string(),
            node_type: None,
            config: None,
            subflow: None,
        };
        let edge = |from: usize, to: usize| Edge {
            from: from.to_string(),
            port: "out".into(),
            to: to.to_string(),
        };
        Canvas {
            nodes: (0..n).map(node).collect(),
            edges: (1..n).map(|i| edge(i - 1, i)).collect(),
        }
    }

    #[test]
    fn a_million_node_chain_is_walked_without_recursion() {
        let mut canvas = chain(1_000_000);
        assert_eq!(find_cycle(&canvas), None);
        canvas.edges.push(Edge {
            from: "999999".into(),
            port: "out".into(),
            to: "999997".into(),
        });
        let (edge, cycle) = find_cycle(&canvas).unwrap();
        assert_eq!(edge, 999_999);
        assert_eq!(cycle, ["999997", "999998", "999999", "999997"]);
    }
}
