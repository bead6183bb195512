//! Deploy plans (seed 002) on the server's own Docker Engine, with release
//! images as services: the seed's example adapted to real services, waves
//! in order, a failing middle wave, pause and resume (and the check of
//! what changed meanwhile), stop, a kill -9 mid-wave, two executions over
//! one service. And what the API refuses, each problem at its pointer.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway_test_support::registry::TestRegistry;

use crate::distribution::{ADMIN, Served};
use crate::services::{Leftovers, containers, ready_release};

impl Served {
    /// Sends `body` as `content_type`; the status and the text answered.
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        let response = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Stores a plan written in YAML; its id.
    async fn plan(&self, yaml: &str) -> u64 {
        let (status, text) = self
            .send("POST", "/api/v1/plans", "application/yaml", yaml)
            .await;
        assert_eq!(status, 201, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_u64()
            .unwrap()
    }

    /// Runs plan `id`; the execution's id.
    async fn run(&self, id: u64) -> u64 {
        let (status, execution) = self
            .call(
                "POST",
                &format!("/api/v1/plans/{id}/executions"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 202, "{execution}");
        execution["id"].as_u64().unwrap()
    }

    async fn execution(&self, id: u64) -> Value {
        let (status, execution) = self
            .call("GET", &format!("/api/v1/executions/{id}"), Value::Null)
            .await;
        assert_eq!(status, 200, "{execution}");
        execution
    }

    /// Waits until execution `id` is in one of `statuses`.
    async fn execution_until(&self, id: u64, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let execution = self.execution(id).await;
            if statuses.contains(&execution["status"].as_str().unwrap()) {
                return execution;
            }
            assert!(Instant::now() < deadline, "never {statuses:?}: {execution}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a service of `release` on the local engine; its id.
    async fn service(&self, name: &str, body: Value) -> u64 {
        let mut body = body;
        body["name"] = json!(name);
        body["target"] = json!("local-docker");
        let (status, service) = self.call("POST", "/api/v1/services", body).await;
        assert_eq!(status, 201, "{service}");
        service["id"].as_u64().unwrap()
    }
}

/// Each service of an execution, by name: (status, wave index, item).
fn items(execution: &Value) -> Vec<(String, String, usize, Value)> {
    let mut items = Vec::new();
    for (n, wave) in execution["waves"].as_array().unwrap().iter().enumerate() {
        for item in wave["items"].as_array().unwrap() {
            items.push((
                item["name"].as_str().unwrap().to_string(),
                item["status"].as_str().unwrap().to_string(),
                n,
                item.clone(),
            ));
        }
    }
    items
}

fn status_of(execution: &Value, name: &str) -> String {
    items(execution)
        .into_iter()
        .find(|(n, ..)| n == name)
        .map(|(_, status, ..)| status)
        .unwrap_or_else(|| panic!("no {name} in {execution}"))
}

/// What the engine says container `name` is: `running`, `exited`, ...
fn container_state(name: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Status}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server, a ready release and its namespace on the engine, cleaned up
/// after.
async fn setup(registry: &TestRegistry) -> (Served, Value, Leftovers) {
    let server = Served::start(registry).await;
    let release = ready_release(&server).await;
    let (_, target) = server
        .call("GET", "/api/v1/targets/local-docker", Value::Null)
        .await;
    let namespace = target["namespace"].as_str().unwrap().to_string();
    let pinned = format!(
        "{}/flows/orders@{}",
        registry.address,
        release["image"]["digest"].as_str().unwrap()
    );
    (server, release, Leftovers(namespace, vec![pinned]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_plan_deploys_wave_by_wave_and_reports_each_service() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let (server, release, leftovers) = setup(&registry).await;
    let namespace = leftovers.0.clone();
    let run = json!({"release": release["name"]});
    let api = server.service("api", run.clone()).await;
    let worker = server
        .service("worker", json!({"release": release["name"], "replicas": 2}))
        .await;
    let legacy = server.service("legacy", run.clone()).await;

    // Seed 002's example, its deployments ones these services can take:
    // api and worker first and at once, then legacy.
    let first = server
        .plan(&format!(
            "comment: 这是一个发布计划的注释\t\t# 此次编排发布的备注,可以为空

deployPlanItems:   \t\t\t# 发布计划的具体内容
 - serviceId: {api}  \t\t\t# !!必填项!! 服务id
   priority: 3\t\t\t\t\t# 该服务在所有待发布服务序列中的优先级
   deployment: START   # !!必填项!! 此次服务的发布方式
   containerExecMethod: PARALLEL  # 容器部署的执行方式(串行或并行)
   deployLabel: tier=edge,canary\t\t# 此次服务发布支持的标签,多个标签以逗号(,)分隔

 - serviceId: {worker}
   priority: 3
   deployment: START
   containerExecMethod: SEQUENTIAL

 - serviceId: {legacy}
   priority: 1
   deployment: START
"
        ))
        .await;
    let execution = server.run(first).await;
    let done = server
        .execution_until(execution, &["succeeded", "failed"])
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let all = items(&done);
    assert_eq!(
        all.iter()
            .map(|(name, status, wave, _)| (name.as_str(), status.as_str(), *wave))
            .collect::<Vec<_>>(),
        [
            ("api", "succeeded", 0),
            ("worker", "succeeded", 0),
            ("legacy", "succeeded", 1)
        ]
    );
    // The later wave started only once every service of the first ended.
    let first_wave_end = all[..2]
        .iter()
        .map(|(.., item)| item["ended_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        all[2].3["started_ms"].as_u64().unwrap() >= first_wave_end,
        "{done}"
    );
    for (.., item) in &all {
        assert_eq!(item["revision_before"], Value::Null, "{item}");
        assert_eq!(item["revision_after"], 1, "{item}");
        assert_eq!(item["health"], "healthy", "{item}");
    }
    assert_eq!(
        containers(&namespace),
        [
            format!("{namespace}_api_r1_0"),
            format!("{namespace}_legacy_r1_0"),
            format!("{namespace}_worker_r1_0"),
            format!("{namespace}_worker_r1_1"),
        ]
    );
    // deployLabel's labels are on what was deployed.
    let labels = Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Labels}}"])
        .arg(format!("{namespace}_api_r1_0"))
        .output()
        .unwrap();
    let labels: Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(
        (labels["tier"].as_str(), labels["canary"].as_str()),
        (Some("edge"), Some("")),
        "{labels}"
    );

    // The report, as JSON and as text.
    let (status, report) = server
        .call(
            "GET",
            &format!("/api/v1/executions/{execution}/report"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "succeeded");
    let timeline: Vec<&str> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert!(
        timeline[0].starts_with("started by admin: 3 services in 2 waves"),
        "{timeline:?}"
    );
    assert!(
        timeline.contains(&"wave 1 of 2 (priority 3) succeeded"),
        "{timeline:?}"
    );
    let text = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/executions/{execution}/report?format=text",
            server.url
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(&format!(
            "execution {execution} of plan {first}: succeeded\n"
        )),
        "{text}"
    );
    assert!(text.contains("wave 2 (priority 1):\n  legacy"), "{text}");
    assert!(text.contains("revision none → 1"), "{text}");

    // The seed's second item: a STOP, then a RESTART, in order.
    let second = server
        .plan(&format!(
            "comment: ''\ndeployPlanItems:\n  - {{serviceId: {legacy}, priority: 2, deployment: STOP}}\n  - {{serviceId: {api}, priority: 1, deployment: RESTART}}\n"
        ))
        .await;
    let execution = server.run(second).await;
    // Followed as Server-Sent Events until it ends.
    let events = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/executions/{execution}/events",
            server.url
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let events = tokio::time::timeout(Duration::from_secs(120), events.text())
        .await
        .expect("the stream ends with the execution")
        .unwrap();
    let data: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data.last().unwrap()["event"], "execution", "{events}");
    assert_eq!(data.last().unwrap()["status"], "succeeded", "{events}");
    assert!(
        data.iter()
            .any(|d| d["event"] == "operation" && d["service"] == api),
        "{events}"
    );
    let done = server
        .execution_until(execution, &["succeeded", "failed"])
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        container_state(&format!("{namespace}_legacy_r1_0")),
        "exited"
    );
    assert_eq!(container_state(&format!("{namespace}_api_r1_0")), "running");
    let restarted = &items(&done)[1].3;
    assert!(
        restarted["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("restarted ")),
        "{restarted}"
    );

    // A plan that ran is kept, immutable; its executions outlive it.
    let (status, _) = server
        .call("DELETE", &format!("/api/v1/plans/{second}"), Value::Null)
        .await;
    assert_eq!(status, 204);
    assert_eq!(server.execution(execution).await["status"], "succeeded");
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/executions/{execution}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = server
        .call(
            "GET",
            &format!("/api/v1/executions/{execution}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 404);
    for id in [api, worker, legacy] {
        server
            .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wave_fails_the_execution_and_no_later_wave_starts() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let (server, release, leftovers) = setup(&registry).await;
    let namespace = leftovers.0.clone();
    let run = json!({"release": release["name"]});
    let first = server.service("first", run.clone()).await;
    let sibling = server.service("sibling", run.clone()).await;
    // Its image is not in the registry: its start fails.
    let missing = format!("{}/flows/missing:1", registry.address);
    let broken = server.service("broken", json!({"image": missing})).await;
    let last = server.service("last", run.clone()).await;
    let plan = server
        .plan(&format!(
            "deployPlanItems:
  - {{serviceId: {first}, priority: 3, deployment: START}}
  - {{serviceId: {broken}, priority: 2, deployment: START}}
  - {{serviceId: {sibling}, priority: 2, deployment: START}}
  - {{serviceId: {last}, priority: 1, deployment: START}}
"
        ))
        .await;
    // Run from the CLI, followed live: it exits 1, the failure printed.
    let out = server.cli(&["plan", "run", &plan.to_string(), "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}{errors}");
    assert!(
        text.contains(&format!(
            "wave 2 (priority 2) broken ({broken}) START: failed: "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("wave 3 (priority 1) last ({last}) START: pending")),
        "{text}"
    );
    assert!(errors.starts_with("error: wave 2 of 3 failed"), "{errors}");
    let (_, executions) = server.call("GET", "/api/v1/executions", Value::Null).await;
    let execution = executions.as_array().unwrap().last().unwrap()["id"]
        .as_u64()
        .unwrap();
    let done = server.execution(execution).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(status_of(&done, "first"), "succeeded");
    assert_eq!(status_of(&done, "broken"), "failed");
    assert_eq!(
        status_of(&done, "sibling"),
        "succeeded",
        "the rest of its wave finished"
    );
    assert_eq!(status_of(&done, "last"), "pending", "no later wave started");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("wave 2 of 3 failed, so no later wave started: broken"),
        "{error}"
    );
    assert!(
        !containers(&namespace).iter().any(|c| c.contains("_last_")),
        "{:?}",
        containers(&namespace)
    );
    // The report as people read it, from the CLI.
    let out = server.cli(&["execution", "report", &execution.to_string()]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(report.contains("  last ("), "{report}");
    assert!(report.contains("START: not started"), "{report}");

    // A plan file with problems: each printed with its place, nothing stored.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "deployPlanItems:\n  - serviceId: {first}\n    deployment: start\n  - priority: 1\n"
        ),
    )
    .unwrap();
    let out = server.cli(&["plan", "create", file.path().to_str().unwrap()]);
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    for said in [
        "/deployPlanItems/0/deployment, line 3, column 17: `deployment` is one of START, STOP, RESTART",
        "/deployPlanItems/1/serviceId, line 4, column 5: `serviceId` is required",
    ] {
        assert!(errors.contains(said), "{said}: {errors}");
    }

    // A failed execution is not resumed; it can be deleted.
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/resume"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/executions/{execution}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_pauses_stops_and_resumes_between_waves_and_after_a_kill() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    let (mut server, release, leftovers) = setup(&registry).await;
    let namespace = leftovers.0.clone();
    // Two replicas, one at a time: a wave that lasts a little.
    let slow = json!({"release": release["name"], "replicas": 2});
    let one = server.service("one", slow.clone()).await;
    let two = server.service("two", slow.clone()).await;
    let three = server.service("three", slow.clone()).await;
    let plan = server
        .plan(&format!(
            "deployPlanItems:
  - {{serviceId: {one}, priority: 3, deployment: START, containerExecMethod: SEQUENTIAL}}
  - {{serviceId: {two}, priority: 2, deployment: START, containerExecMethod: SEQUENTIAL}}
  - {{serviceId: {three}, priority: 1, deployment: START, containerExecMethod: SEQUENTIAL}}
"
        ))
        .await;

    // Paused during the first of three waves: it finishes, no more start.
    let execution = server.run(plan).await;
    server.execution_until(execution, &["running"]).await;
    let (status, asked) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/pause"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202, "{asked}");
    assert!(
        ["pausing", "paused"].contains(&asked["status"].as_str().unwrap()),
        "{asked}"
    );
    let paused = server
        .execution_until(execution, &["paused", "failed"])
        .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert_eq!(status_of(&paused, "one"), "succeeded");
    assert_eq!(status_of(&paused, "two"), "pending");
    assert!(!containers(&namespace).iter().any(|c| c.contains("_two_")));

    // Another plan over a service it holds is refused, naming it.
    let other = server
        .plan(&format!(
            "deployPlanItems:\n  - {{serviceId: {two}, deployment: STOP}}\n"
        ))
        .await;
    let (status, refused) = server
        .call(
            "POST",
            &format!("/api/v1/plans/{other}/executions"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"]["message"],
        format!("execution {execution} holds service {two} until it ends: wait for it, or stop it")
    );
    // Deleting a plan whose execution has not ended is refused too.
    let (status, _) = server
        .call("DELETE", &format!("/api/v1/plans/{plan}"), Value::Null)
        .await;
    assert_eq!(status, 409);

    // Service two is changed by hand meanwhile: resuming needs force.
    let (status, revised) = server
        .call(
            "PUT",
            &format!("/api/v1/services/{two}"),
            json!({"name": "two", "target": "local-docker", "release": release["name"], "replicas": 1}),
        )
        .await;
    assert_eq!(status, 200, "{revised}");
    let (status, refused) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/resume"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "changed");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("two ({two}): newest revision 1 → 2")),
        "{refused}"
    );
    let (status, resumed) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/resume?force=true"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202, "{resumed}");

    // Killed mid-wave: interrupted at the restart, resumed by hand, done.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = server.execution(execution).await;
        if status_of(&seen, "two") == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "wave 2 never started: {seen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_and_restart().await;
    let interrupted = server.execution(execution).await;
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.execution(execution).await["status"],
        "interrupted",
        "waits for a resume"
    );
    let (status, resumed) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/resume"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202, "{resumed}");
    let done = server
        .execution_until(execution, &["succeeded", "failed"])
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let two_item = &items(&done)[1].3;
    assert_eq!(two_item["revision_after"], 2, "{two_item}");
    let timeline: Vec<&str> = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    for said in [
        "pause asked by admin",
        "resumed by admin with force",
        "interrupted by a server stop",
        "resumed by admin",
    ] {
        assert!(
            timeline.iter().any(|m| m.starts_with(said)),
            "{said}: {timeline:?}"
        );
    }
    assert_eq!(
        containers(&namespace)
            .iter()
            .filter(|c| c.contains("_two_"))
            .count(),
        1,
        "each replica once: {:?}",
        containers(&namespace)
    );

    // Stopped during its only wave: that service finishes, it ends stopped.
    let again = server
        .plan(&format!(
            "deployPlanItems:\n  - {{serviceId: {one}, priority: 2, deployment: RESTART, containerExecMethod: SEQUENTIAL}}\n  - {{serviceId: {three}, priority: 1, deployment: STOP}}\n"
        ))
        .await;
    let execution = server.run(again).await;
    server.execution_until(execution, &["running"]).await;
    let (status, asked) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/stop"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 202, "{asked}");
    let (status, refused) = server
        .call(
            "DELETE",
            &format!("/api/v1/executions/{execution}"),
            Value::Null,
        )
        .await;
    assert!(status == 409 || status == 204, "{refused}");
    let stopped = server
        .execution_until(execution, &["stopped", "failed"])
        .await;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(status_of(&stopped, "one"), "succeeded");
    assert_eq!(status_of(&stopped, "three"), "pending");
    assert_eq!(
        container_state(&format!("{namespace}_three_r1_0")),
        "running"
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/resume"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "a stopped execution does not resume: {body}");
}

/// A tar.gz of `files`.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upload_deploy_builds_the_package_and_runs_it_as_a_new_revision() {
    let registry = TestRegistry::htpasswd(crate::distribution::USER, crate::distribution::PASSWORD);
    // The server fetches code from loopback only, at most 1 MiB.
    let server = Served::start_with(&format!(
        "egress-allow = [\"127.0.0.1/32\"]\n\n\
         [registry]\nadapter = \"distribution\"\nversion = \"^1\"\n\
         settings = {{ url = \"http://{address}\", namespace = \"flows\", username = \"{user}\" }}\n\
         secrets = {{ password = \"{password}\" }}\n\n\
         [sources]\nhosts = [\"127.0.0.1\"]\nmax-mib = 1\n",
        address = registry.address,
        user = crate::distribution::USER,
        password = crate::distribution::PASSWORD,
    ))
    .await;
    let release = ready_release(&server).await;
    let pinned = format!(
        "{}/flows/orders@{}",
        registry.address,
        release["image"]["digest"].as_str().unwrap()
    );
    let (_, target) = server
        .call("GET", "/api/v1/targets/local-docker", Value::Null)
        .await;
    let mut leftovers = Leftovers(
        target["namespace"].as_str().unwrap().to_string(),
        vec![pinned.clone()],
    );
    let namespace = leftovers.0.clone();
    // Packages built on the release's image.
    let dockerfile = format!("FROM {pinned}\nCOPY hello.txt /hello.txt\n");
    let package = tar_gz(&[
        ("Dockerfile", dockerfile.as_bytes()),
        ("hello.txt", b"built by a plan\n"),
    ]);
    let no_dockerfile = tar_gz(&[("hello.txt", b"hi")]);
    let internal = tar_gz(&[("Dockerfile", b"FROM 10.1.2.3:5000/secret:1\n")]);
    let variable = tar_gz(&[("Dockerfile", b"ARG BASE\nFROM ${BASE}\n")]);
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big = tar_gz(&[("Dockerfile", dockerfile.as_bytes()), ("big", &noise)]);
    let code = slipway_test_support::files::FileServer::start(vec![
        ("/app.tar.gz", package),
        ("/none.tar.gz", no_dockerfile),
        ("/big.tar.gz", big),
        ("/internal.tar.gz", internal),
        ("/variable.tar.gz", variable),
    ])
    .await;
    let base = server.service("base", json!({"image": pinned})).await;
    let app = server.service("app", json!({"image": pinned})).await;
    let deployed = server.operate(app, json!({"operation": "deploy"})).await;
    assert_eq!(deployed["status"], "succeeded", "{deployed}");

    // Code from a host the operator did not allow is a problem at once.
    let (status, refused) = server
        .send(
            "POST",
            "/api/v1/plans",
            "application/yaml",
            &format!("deployPlanItems:\n  - serviceId: {app}\n    deployment: HTTP_UPLOAD_DEPLOY\n    httpSrcUri: http://localhost:1/app.tar.gz\n"),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["error"]["path"], "/deployPlanItems/0/httpSrcUri");
    assert_eq!(
        (
            refused["error"]["line"].as_u64(),
            refused["error"]["column"].as_u64()
        ),
        (Some(4), Some(17))
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allows no such source host"),
        "{refused}"
    );

    // Base first (its engine pulls the release), then app built on it.
    let plan = server
        .plan(&format!(
            "deployPlanItems:\n  - {{serviceId: {base}, priority: 2, deployment: START}}\n  - {{serviceId: {app}, priority: 1, deployment: HTTP_UPLOAD_DEPLOY, httpSrcUri: '{}/app.tar.gz'}}\n",
            code.url
        ))
        .await;
    let execution = server.run(plan).await;
    let done = server
        .execution_until(execution, &["succeeded", "failed"])
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(code.requests("/app.tar.gz"), 1);
    let item = &items(&done)[1].3;
    assert_eq!(
        (
            item["revision_before"].as_u64(),
            item["revision_after"].as_u64()
        ),
        (Some(1), Some(2)),
        "{item}"
    );
    let built = item["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .find(|m| m.starts_with("built "))
        .unwrap_or_else(|| panic!("{item}"))
        .to_string();
    assert!(
        built.contains(&format!("from the package at {}/app.tar.gz", code.url)),
        "{built}"
    );
    let (_, shown) = server
        .call("GET", &format!("/api/v1/services/{app}"), Value::Null)
        .await;
    assert_eq!(
        (shown["revision"].as_u64(), shown["running"].as_u64()),
        (Some(2), Some(2)),
        "{shown}"
    );
    let image = shown["image"].as_str().unwrap().to_string();
    assert!(
        image.starts_with(&format!("{}/flows/app.build@sha256:", registry.address)),
        "{image}"
    );
    leftovers.1.push(image);
    // What runs is the package: its file is in the container.
    let container = format!("{namespace}_app_r2_0");
    let copied = Command::new("docker")
        .args(["cp", &format!("{container}:/hello.txt"), "-"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&copied.stdout).contains("built by a plan"),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(container_state(&container), "running");
    // The engine keeps no copy of the build.
    let kept = Command::new("docker")
        .args(["images", "-q", "slipway-build/*"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&kept.stdout).trim(), "");

    // Rolled back, in reverse wave order: app on what it ran before (as
    // revision 3), base stopped, as nothing of it ran before.
    let out = server.cli(&["execution", "rollback", &execution.to_string(), "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("app ({app}) back to revision 1: succeeded")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "base ({base}) STOP (no revision ran before): succeeded"
        )),
        "{text}"
    );
    let (_, shown) = server
        .call("GET", &format!("/api/v1/services/{app}"), Value::Null)
        .await;
    assert_eq!(
        (shown["revision"].as_u64(), shown["running"].as_u64()),
        (Some(3), Some(3)),
        "{shown}"
    );
    assert_eq!(shown["image"], pinned.as_str());
    assert_eq!(container_state(&format!("{namespace}_app_r3_0")), "running");
    assert_eq!(container_state(&format!("{namespace}_base_r1_0")), "exited");
    let (_, executions) = server.call("GET", "/api/v1/executions", Value::Null).await;
    let rollback = executions.as_array().unwrap().last().unwrap().clone();
    assert_eq!(rollback["rollback_of"], execution, "{rollback}");
    let rolled = &items(&rollback);
    assert_eq!(rolled[0].0, "app", "the later wave first: {rollback}");
    // Once more: app has changed since (the rollback moved it), so no.
    let (status, refused) = server
        .call(
            "POST",
            &format!("/api/v1/executions/{execution}/rollback"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "changed", "{refused}");

    // A package past the limit, without a Dockerfile, or built on an
    // image the server's own pulls may not reach (or cannot name before
    // the build) fails its item.
    for (path, says) in [
        ("/big.tar.gz", "larger than 1048576 bytes unpacked"),
        ("/none.tar.gz", "Dockerfile"),
        (
            "/internal.tar.gz",
            "`FROM 10.1.2.3:5000/secret:1`: the registry `10.1.2.3:5000` is on an internal address",
        ),
        ("/variable.tar.gz", "names its image with a variable"),
    ] {
        let plan = server
            .plan(&format!(
                "deployPlanItems:\n  - {{serviceId: {app}, deployment: HTTP_UPLOAD_DEPLOY, httpSrcUri: '{}{path}'}}\n",
                code.url
            ))
            .await;
        let execution = server.run(plan).await;
        let done = server
            .execution_until(execution, &["succeeded", "failed"])
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        let error = items(&done)[0].3["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{path}: {error}");
    }
    for id in [base, app] {
        server
            .call("DELETE", &format!("/api/v1/services/{id}"), Value::Null)
            .await;
    }
}

#[tokio::test]
async fn bad_plans_are_refused_with_every_problem_at_its_pointer_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = slipway_store::Store::open(dir.path()).unwrap();
    let token = store.bootstrap("acme", None).unwrap().unwrap().token;
    let state = crate::common::state(store);
    let send = |body: &'static str, content_type: &'static str| {
        let state = state.clone();
        let token = token.clone();
        async move {
            crate::common::call(
                &state,
                "POST",
                "/api/v1/plans",
                Some(&token),
                content_type,
                body,
            )
            .await
        }
    };
    let (status, body) = send(
        "comment: x\ndeployPlanItems:\n  - serviceId: 404\n    deployment: start\n  - priority: 1\n    deployment: HTTP_UPLOAD_DEPLOY\n",
        "application/yaml",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let problems: Vec<(String, u64, u64)> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap(),
                p["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("/deployPlanItems/0/serviceId".to_string(), 3, 16),
            ("/deployPlanItems/0/deployment".to_string(), 4, 17),
            ("/deployPlanItems/1/httpSrcUri".to_string(), 5, 5),
            ("/deployPlanItems/1/serviceId".to_string(), 5, 5),
        ]
    );
    assert_eq!(body["error"]["path"], "/deployPlanItems/0/serviceId");
    assert_eq!(
        (
            body["error"]["line"].as_u64(),
            body["error"]["column"].as_u64()
        ),
        (Some(3), Some(16))
    );
    assert_eq!(
        body["error"]["problems"][0]["message"],
        "the organisation has no service 404"
    );
    // JSON is read the same way; one problem is the error itself.
    let (status, body) = send(
        r#"{"deployPlanItems": [{"serviceId": 404, "deployment": "STOP"}]}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["path"], "/deployPlanItems/0/serviceId");
    assert_eq!(body["error"]["column"], 36);
    // Nothing was stored.
    let (status, list) = crate::common::call(
        &state,
        "GET",
        "/api/v1/plans",
        Some(&token),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([]));
}
