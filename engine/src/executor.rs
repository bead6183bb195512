//! Running messages through a flow: from a trigger along the edges, each node
//! invoked in the sandbox, until a message reaches the end of its path.
//!
//! A port with several edges sends a copy down each; the first path to end
//! gives the reply and the others finish in the background. A node that fails
//! sends the message down its `error` port when the flow connects one: the
//! body becomes `{"error": {"node", "code", "message"}}` and the attributes
//! `error.node`, `error.code` and `error.message` are set. Otherwise the run
//! ends with a [`Failure`] naming the node.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use slipway_runtime::{CallContext, CallError, HostPattern, Message, Plugin};

use slipway_flow::{ERROR_PORT, FlowDocument, PluginRef};

/// The most node invocations one message may take (packaging refuses
/// cycles; this bounds a run regardless).
pub const MAX_STEPS: usize = 10_000;

/// One node, ready to run.
struct Step {
    id: String,
    plugin: Arc<Plugin>,
    /// The translated node, as `invoke` takes it.
    node: String,
    /// What its calls are granted.
    context: CallContext,
    /// Output port to the nodes it feeds.
    next: HashMap<String, Vec<usize>>,
}

/// An `http-trigger` node: the method and path it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The trigger node's index.
    pub node: usize,
    /// Its id.
    pub id: String,
    /// Upper-case method.
    pub method: String,
    /// The path template, `/orders/{id}`.
    pub path: String,
}

/// How a run ended without a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The node that failed.
    pub node: String,
    /// Short code: the node's own, or `plugin-failed` when the plugin trapped,
    /// ran out of time or memory.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The HTTP status to answer with.
    pub status: u16,
}

/// The end of a run.
#[derive(Debug)]
pub enum Outcome {
    /// The message that reached the end of its path.
    Reply(Message),
    /// A node failed and the flow does not route its error.
    Failed(Failure),
}

/// A loaded flow.
pub struct Executor {
    steps: Vec<Step>,
    routes: Vec<Route>,
    /// Copies of messages running down the other edges of a fan-out.
    branches: Arc<AtomicUsize>,
}

/// Most fan-out copies running at once, over all requests; a copy past it
/// is not started (and logged).
pub const MAX_BRANCHES: usize = 1024;

/// A fan-out copy counted while it runs.
struct Branch(Arc<AtomicUsize>);

impl Branch {
    /// A place among the running copies, if there is one.
    fn enter(count: &Arc<AtomicUsize>) -> Option<Branch> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_BRANCHES {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Branch(count.clone()))
    }
}

impl Drop for Branch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The flow names something that is not there.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A node's plugin was not loaded.
    #[error("node `{node}` needs plugin {plugin}@{version}, which is not loaded")]
    MissingPlugin {
        /// The node.
        node: String,
        /// Plugin name.
        plugin: String,
        /// Its version.
        version: String,
    },
    /// An edge names an unknown node.
    #[error("an edge names node `{0}`, which the flow does not have")]
    UnknownNode(String),
    /// A trigger node's translated config is not what `http-trigger` writes.
    #[error("trigger `{0}` has no method and path")]
    BadTrigger(String),
}

impl Executor {
    /// Builds the graph of `flow` over its loaded plugins.
    pub fn new(
        flow: &FlowDocument,
        plugins: &BTreeMap<PluginRef, Arc<Plugin>>,
    ) -> Result<Executor, FlowError> {
        let routes = triggers(flow)?;
        let index: HashMap<&str, usize> = flow
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut steps = Vec::with_capacity(flow.nodes.len());
        for node in &flow.nodes {
            let plugin = plugins
                .get(&node.plugin)
                .ok_or_else(|| FlowError::MissingPlugin {
                    node: node.id.clone(),
                    plugin: node.plugin.name.clone(),
                    version: node.plugin.version.clone(),
                })?;
            steps.push(Step {
                id: node.id.clone(),
                context: grant(plugin, &node.node),
                plugin: plugin.clone(),
                node: node.node.to_string(),
                next: HashMap::new(),
            });
        }
        for edge in &flow.edges {
            let from = *index
                .get(edge.from.as_str())
                .ok_or_else(|| FlowError::UnknownNode(edge.from.clone()))?;
            let to = *index
                .get(edge.to.as_str())
                .ok_or_else(|| FlowError::UnknownNode(edge.to.clone()))?;
            steps[from]
                .next
                .entry(edge.port.clone())
                .or_default()
                .push(to);
        }
        Ok(Executor {
            steps,
            routes,
            branches: Arc::default(),
        })
    }

    /// Fan-out copies running now: a drain waits for them too.
    pub fn branches(&self) -> usize {
        self.branches.load(Ordering::Acquire)
    }

    /// The HTTP triggers, in flow order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Runs `message` from node `start` until a path ends; `observe` hears of
    /// every invocation.
    pub fn run<'a>(
        self: &'a Arc<Self>,
        start: usize,
        message: Message,
        observe: &'a Observer<'a>,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(self.walk(start, message, observe))
    }

    async fn walk(
        self: &Arc<Self>,
        start: usize,
        message: Message,
        observe: &Observer<'_>,
    ) -> Outcome {
        let mut current = start;
        let mut message = message;
        for _ in 0..MAX_STEPS {
            let step = &self.steps[current];
            // A failure sends the message on down the error port: keep a copy
            // only where the flow connects one.
            let kept = step.next.contains_key(ERROR_PORT).then(|| message.clone());
            let started = Instant::now();
            let result = step.plugin.invoke(&step.context, &step.node, message).await;
            observe(current, started.elapsed(), !matches!(result, Ok(Ok(_))));
            let failure = match result {
                Ok(Ok(output)) => Ok((output.port, output.message)),
                Ok(Err(error)) => Err(Failure {
                    node: step.id.clone(),
                    status: error.status.unwrap_or(500),
                    code: error.code,
                    message: error.message,
                }),
                Err(error) => Err(plugin_failure(&step.id, &error)),
            };
            let (port, next_message) = match failure {
                Ok(output) => output,
                Err(failure) => match kept.and_then(|m| self.error_path(current, m, &failure)) {
                    Some((next, error_message)) => {
                        current = next;
                        message = error_message;
                        continue;
                    }
                    None => return Outcome::Failed(failure),
                },
            };
            let targets = step.next.get(&port).map(Vec::as_slice).unwrap_or_default();
            let Some((&first, rest)) = targets.split_first() else {
                return Outcome::Reply(next_message);
            };
            for &other in rest {
                let Some(branch) = Branch::enter(&self.branches) else {
                    tracing::warn!(node = %self.steps[other].id, "fan-out limit reached: a copy of the message is not sent");
                    continue;
                };
                let executor = self.clone();
                let copy = next_message.clone();
                tokio::spawn(async move {
                    executor.run(other, copy, &ignore).await;
                    drop(branch);
                });
            }
            current = first;
            message = next_message;
        }
        Outcome::Failed(Failure {
            node: self.steps[current].id.clone(),
            code: "too-many-steps".into(),
            message: format!("the message passed {MAX_STEPS} nodes"),
            status: 508,
        })
    }

    /// The node a failure goes to. The message keeps its attributes; its
    /// body becomes the error as JSON, `{"error": {node, code, message}}`.
    fn error_path(
        &self,
        at: usize,
        mut message: Message,
        failure: &Failure,
    ) -> Option<(usize, Message)> {
        let next = *self.steps[at].next.get(ERROR_PORT)?.first()?;
        let body = serde_json::json!({"error": {
            "node": failure.node, "code": failure.code, "message": failure.message}});
        message.body = body.to_string().into_bytes();
        message
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        message
            .headers
            .push(("content-type".into(), "application/json".into()));
        set_attribute(&mut message, "error.node", &failure.node);
        set_attribute(&mut message, "error.code", &failure.code);
        set_attribute(&mut message, "error.message", &failure.message);
        Some((next, message))
    }
}

/// The `http-trigger` nodes of `flow`, read from their translated config
/// (no plugin needs loading).
pub fn triggers(flow: &FlowDocument) -> Result<Vec<Route>, FlowError> {
    let mut routes = Vec::new();
    for (i, node) in flow.nodes.iter().enumerate() {
        if node.trigger && node.plugin.name == "http-trigger" {
            let text = |key: &str| node.node[key].as_str().map(str::to_string);
            let (Some(method), Some(path)) = (text("method"), text("path")) else {
                return Err(FlowError::BadTrigger(node.id.clone()));
            };
            routes.push(Route {
                node: i,
                id: node.id.clone(),
                method,
                path,
            });
        }
    }
    Ok(routes)
}

/// What a node's calls may reach over HTTP. A plugin whose manifest allows
/// any host (`*`) gets only the `host` its translated node names (as
/// `http-call` writes it), or none; others keep their manifest's list.
fn grant(plugin: &Plugin, node: &serde_json::Value) -> CallContext {
    if !plugin
        .manifest()
        .allowed_hosts
        .iter()
        .any(HostPattern::is_any)
    {
        return CallContext::default();
    }
    let hosts: Vec<HostPattern> = node["host"]
        .as_str()
        .and_then(|host| HostPattern::try_from(host.to_string()).ok())
        .into_iter()
        .collect();
    CallContext {
        allowed_hosts: Some(hosts.into()),
        ..CallContext::default()
    }
}

/// Hears of every node invocation: node index, time taken, whether it failed.
pub type Observer<'a> = dyn Fn(usize, Duration, bool) + Sync + 'a;

fn ignore(_: usize, _: Duration, _: bool) {}

fn plugin_failure(node: &str, error: &CallError) -> Failure {
    Failure {
        node: node.to_string(),
        code: "plugin-failed".into(),
        message: error.to_string(),
        status: 500,
    }
}

/// Sets an attribute, replacing its previous value.
pub fn set_attribute(message: &mut Message, name: &str, value: &str) {
    message.attributes.retain(|(k, _)| k != name);
    message
        .attributes
        .push((name.to_string(), value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_out_copies_stop_at_the_bound_and_free_their_place() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut running: Vec<Branch> = (0..MAX_BRANCHES)
            .map(|_| Branch::enter(&count).expect("within the bound"))
            .collect();
        assert!(Branch::enter(&count).is_none(), "one past the bound");
        assert_eq!(count.load(Ordering::Acquire), MAX_BRANCHES);
        running.pop();
        assert!(
            Branch::enter(&count).is_some(),
            "a place freed is taken again"
        );
        drop(running);
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
