//! A deploy target that renders one `Workload` object per service and calls it
//! healthy when the observed ready count reaches the replicas.

use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::target::{DeployTarget, Error, Health, Object, Observed, Service};

/// The target.
pub struct Echo;

impl DeployTarget for Echo {
    type Settings = Value;

    fn settings_schema() -> Value {
        json!({"type": "object"})
    }

    fn render(_: &Value, service: &Service) -> Result<Vec<Object>, Error> {
        let body = json!({
            "image": service.image,
            "replicas": service.replicas,
            "env": service.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        });
        Ok(vec![Object {
            kind: "Workload".into(),
            name: service.name.clone(),
            body: body.to_string(),
        }])
    }

    fn assess(_: &Value, service: &Service, observed: &[Observed]) -> Health {
        let Some(state) = observed
            .iter()
            .find(|o| o.name == service.name)
            .and_then(|o| o.state.as_ref())
        else {
            return Health::Progressing("not created yet".into());
        };
        let ready = slipway_sdk::serde_json::from_str::<Value>(state)
            .ok()
            .and_then(|s| s["ready"].as_u64())
            .unwrap_or(0);
        if ready >= u64::from(service.replicas) {
            Health::Healthy
        } else {
            Health::Progressing(format!("{ready} of {} ready", service.replicas))
        }
    }
}

slipway_sdk::export_deploy_target!(Echo);
