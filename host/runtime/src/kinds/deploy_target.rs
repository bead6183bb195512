//! Calls into `deploy-target` plugins.

use serde::{Deserialize, Serialize};

use super::{Diagnostic, diagnostics, plugin_json};
use crate::bindings::target::DeployTargetPre;
use crate::bindings::target::exports::slipway::plugin::target as wit;
use crate::context::CallContext;
use crate::error::CallError;
use crate::plugin::{Description, Plugin, Pre, Session, within};
use crate::state::CallState;

pub use wit::{HostMount, MountKind, PortPair, Resources, Service, ServiceType, Storage};

/// What a deploy target says about itself.
pub type TargetInfo = super::AdapterInfo;

/// An object for the host to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// e.g. `Deployment`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object itself.
    pub body: serde_json::Value,
}

/// What the host observed of an applied object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// e.g. `Deployment`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Its state; `None` when it does not exist.
    pub state: Option<serde_json::Value>,
}

/// A service's health as the target judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum Health {
    /// Still rolling out.
    Progressing(String),
    /// Running as asked.
    Healthy,
    /// Running, but not as asked.
    Degraded(String),
    /// Will not get better by waiting.
    Failed(String),
}

/// A failure the target reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Settings are invalid.
    #[error("invalid settings")]
    InvalidSettings(Vec<Diagnostic>),
    /// The service cannot run on this target as specified.
    #[error("invalid service")]
    InvalidService(Vec<Diagnostic>),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

pub(crate) async fn describe(
    mut session: Session,
    pre: &DeployTargetPre<CallState>,
) -> Result<Description, CallError> {
    let bounds = session.bounds();
    let result = within(bounds, async {
        let instance = pre.instantiate_async(&mut session.store).await?;
        instance
            .slipway_plugin_target()
            .call_describe(&mut session.store)
            .await
    })
    .await;
    let raw = match result {
        Ok(raw) => raw,
        Err(err) => return session.finish(Err(err)),
    };
    super::AdapterInfo::new(raw.name, raw.version, raw.description, &raw.settings_schema)
        .map(Description::Target)
        .map_err(|e| session.bad_result(e))
}

/// Runs one export of a deploy target on a fresh instance.
macro_rules! target_call {
    ($plugin:expr, $context:expr, $name:literal, |$guest:ident, $store:ident| $call:expr) => {{
        let pre = match &$plugin.pre {
            Pre::Target(pre) => pre,
            _ => return Err($plugin.wrong_kind($name)),
        };
        let mut session = $plugin.session($context, $name).await;
        let bounds = session.bounds();
        let result = within(bounds, async {
            let instance = pre.instantiate_async(&mut session.store).await?;
            let $guest = instance.slipway_plugin_target();
            let $store = &mut session.store;
            $call.await
        })
        .await;
        (session, result)
    }};
}

impl Plugin {
    #[allow(clippy::ptr_arg)] // the generated binding takes `&String`
    pub(crate) async fn target_validate_settings(
        &self,
        context: &CallContext,
        settings: &String,
    ) -> Result<Vec<Diagnostic>, CallError> {
        let (session, result) = target_call!(self, context, "validate-settings", |g, s| g
            .call_validate_settings(s, settings));
        session.finish(result).map(diagnostics)
    }

    /// The objects that run `service` on this target.
    pub async fn render(
        &self,
        context: &CallContext,
        service: &Service,
    ) -> Result<Result<Vec<Rendered>, TargetError>, CallError> {
        let (session, result) =
            target_call!(self, context, "render", |g, s| g.call_render(s, service));
        let objects = match session.finish(result)? {
            Ok(objects) => objects,
            Err(e) => {
                return Ok(Err(match e {
                    wit::Error::InvalidSettings(d) => TargetError::InvalidSettings(diagnostics(d)),
                    wit::Error::InvalidService(d) => TargetError::InvalidService(diagnostics(d)),
                    wit::Error::Other(m) => TargetError::Other(m),
                }));
            }
        };
        let mut rendered = Vec::with_capacity(objects.len());
        for o in objects {
            let body =
                plugin_json(&o.body, "a rendered object").map_err(|e| session.bad_result(e))?;
            rendered.push(Rendered {
                kind: o.kind,
                name: o.name,
                body,
            });
        }
        Ok(Ok(rendered))
    }

    /// Judges the service's health from observed objects.
    pub async fn assess(
        &self,
        context: &CallContext,
        service: &Service,
        observed: &[Observed],
    ) -> Result<Health, CallError> {
        let observed: Vec<wit::Observed> = observed
            .iter()
            .map(|o| wit::Observed {
                kind: o.kind.clone(),
                name: o.name.clone(),
                state: o.state.as_ref().map(|s| s.to_string()),
            })
            .collect();
        let (session, result) = target_call!(self, context, "assess", |g, s| g
            .call_assess(s, service, &observed));
        session.finish(result).map(|h| match h {
            wit::Health::Progressing(m) => Health::Progressing(m),
            wit::Health::Healthy => Health::Healthy,
            wit::Health::Degraded(m) => Health::Degraded(m),
            wit::Health::Failed(m) => Health::Failed(m),
        })
    }
}
