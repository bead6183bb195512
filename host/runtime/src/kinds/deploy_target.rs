//! Calls into `deploy-target` plugins.

use serde::{Deserialize, Serialize};

use super::{Diagnostic, diagnostics, plugin_json};
use crate::bindings::target::DeployTargetPre;
use crate::bindings::target::exports::slipway::plugin::target as wit;
use crate::context::CallContext;
use crate::error::CallError;
use crate::plugin::{Description, Plugin, Pre, Session};
use crate::state::CallState;

pub use wit::{
    HealthCheck, HostMount, HttpProbe, MountKind, PortPair, Probe, Resources, Rollout, Service,
    ServiceKind, ServiceType, Storage,
};

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
    let result = run_export!(session, pre, slipway_plugin_target, |g, s| g
        .call_describe(s));
    session.conclude(result, |raw| {
        super::AdapterInfo::new(raw.name, raw.version, raw.description, &raw.settings_schema)
            .map(Description::Target)
    })
}

/// Runs one export of a deploy target on a fresh instance.
macro_rules! target_call {
    ($plugin:expr, $context:expr, $name:literal, |$g:ident, $s:ident| $call:expr) => {
        call_export!(
            $plugin,
            $context,
            $name,
            Pre::Target,
            slipway_plugin_target,
            |$g, $s| $call
        )
    };
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
        session.conclude(result, |rendered| {
            let objects = match rendered {
                Ok(objects) => objects,
                Err(e) => {
                    return Ok(Err(match e {
                        wit::Error::InvalidSettings(d) => {
                            TargetError::InvalidSettings(diagnostics(d))
                        }
                        wit::Error::InvalidService(d) => {
                            TargetError::InvalidService(diagnostics(d))
                        }
                        wit::Error::Other(m) => TargetError::Other(m),
                    }));
                }
            };
            objects
                .into_iter()
                .map(|o| {
                    Ok(Rendered {
                        body: plugin_json(&o.body, "a rendered object")?,
                        kind: o.kind,
                        name: o.name,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map(Ok)
        })
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
