use super::*;

/// Services 111, 222 and 333 are the caller's; code comes from anywhere
/// but `blocked.example`.
struct Owned;

impl Checks for Owned {
    fn owns(&self, id: u64) -> bool {
        [111, 222, 333].contains(&id)
    }

    fn source(&self, url: &str) -> Result<(), String> {
        if url.contains("blocked.example") {
            Err("not from there".into())
        } else {
            Ok(())
        }
    }
}

const OWNED: &Owned = &Owned;

/// The problems of `text`, as (pointer, line, column).
fn problems(text: &str) -> Vec<(String, u32, u32)> {
    parse(text, OWNED)
        .expect_err("the plan has problems")
        .into_iter()
        .map(|p| (p.path, p.line, p.column))
        .collect()
}

fn message(text: &str, path: &str) -> String {
    parse(text, OWNED)
        .expect_err("the plan has problems")
        .into_iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}"))
        .message
}

/// Seed 002's example, its ids made the caller's and its URLs real ones.
const SEED: &str = "comment: 这是一个发布计划的注释\t\t# 此次编排发布的备注,可以为空

deployPlanItems:   \t\t\t# 发布计划的具体内容
 - serviceId: 111  \t\t\t# !!必填项!! 服务id
   priority: 3\t\t\t\t\t# 该服务在所有待发布服务序列中的优先级
   deployment: HTTP_UPLOAD_DEPLOY   # !!必填项!! 此次服务的发布方式
   containerExecMethod: PARALLEL  # 容器部署的执行方式(串行或并行)
   deployLabel: label1\t\t# 此次服务发布支持的标签,多个标签以逗号(,)分隔
   httpSrcUri: http://example.com/app.zip   # http上传部署的代码包地址
   compileRepoPath: http://git.example.com/app.git   # 编译部署的git仓库地址
   compileRepoBranch: master        # 编译部署git分支名称

 - serviceId: 222
   priority: 1
   deployment: STOP
   containerExecMethod: PARALLEL
";

#[test]
fn the_seeds_example_parses_with_its_defaults() {
    let plan = parse(SEED, OWNED).unwrap();
    assert_eq!(plan.comment, "这是一个发布计划的注释");
    let [first, second] = &plan.deploy_plan_items[..] else {
        panic!("two items");
    };
    assert_eq!(
        (first.service_id, first.priority, first.deployment),
        (111, 3, Deployment::HttpUploadDeploy)
    );
    assert_eq!(
        first.http_src_uri.as_deref(),
        Some("http://example.com/app.zip")
    );
    assert_eq!(
        first.labels(),
        BTreeMap::from([("label1".to_string(), String::new())])
    );
    assert_eq!(
        (
            second.service_id,
            second.deployment,
            second.container_exec_method
        ),
        (222, Deployment::Stop, ExecMethod::Parallel)
    );

    // Defaults: priority 0, PARALLEL; an empty comment.
    let plan = parse(
        "comment:\ndeployPlanItems:\n  - serviceId: 333\n    deployment: RESTART\n",
        OWNED,
    )
    .unwrap();
    assert_eq!(plan.comment, "");
    let item = &plan.deploy_plan_items[0];
    assert_eq!(
        (item.priority, item.container_exec_method),
        (0, ExecMethod::Parallel)
    );
    assert_eq!(item.labels(), BTreeMap::new());
}

#[test]
fn json_parses_as_the_same_plan() {
    let json = r#"{"comment":"","deployPlanItems":[{"serviceId":333,"deployment":"RESTART","priority":2,"containerExecMethod":"SEQUENTIAL","deployLabel":"tier=web, canary"}]}"#;
    let plan = parse(json, OWNED).unwrap();
    let item = &plan.deploy_plan_items[0];
    assert_eq!(
        (item.priority, item.container_exec_method),
        (2, ExecMethod::Sequential)
    );
    assert_eq!(
        item.labels(),
        BTreeMap::from([
            ("canary".to_string(), String::new()),
            ("tier".to_string(), "web".to_string())
        ])
    );
    // What is stored reads back in the seed's own keys.
    let stored = serde_json::to_value(&plan).unwrap();
    assert_eq!(stored["deployPlanItems"][0]["serviceId"], 333);
    assert_eq!(stored["deployPlanItems"][0]["deployment"], "RESTART");
    assert_eq!(
        serde_json::from_value::<PlanDocument>(stored).unwrap(),
        plan
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_pointer_line_and_column() {
    let text = "\
comment: many problems
deployPlanItems:
  - priority: 3
    deployment: start
  - serviceId: 222
    deployment: HTTP_UPLOAD_DEPLOY
    containerExecMethod: parallel
  - serviceId: 999
    deployment: COMPILE_DEPLOY
    compileRepoPath: ftp://example.com/repo
  - serviceId: abc
    priority: high
    deployment: STOP
";
    assert_eq!(
        problems(text),
        [
            ("/deployPlanItems/0/serviceId".to_string(), 3, 5),
            ("/deployPlanItems/0/deployment".to_string(), 4, 17),
            ("/deployPlanItems/1/httpSrcUri".to_string(), 5, 5),
            ("/deployPlanItems/1/containerExecMethod".to_string(), 7, 26),
            ("/deployPlanItems/2/compileRepoBranch".to_string(), 8, 5),
            ("/deployPlanItems/2/serviceId".to_string(), 8, 16),
            ("/deployPlanItems/2/compileRepoPath".to_string(), 10, 22),
            ("/deployPlanItems/3/serviceId".to_string(), 11, 16),
            ("/deployPlanItems/3/priority".to_string(), 12, 15),
        ]
    );
    assert_eq!(
        message(text, "/deployPlanItems/0/deployment"),
        "`deployment` is one of START, STOP, RESTART, HTTP_UPLOAD_DEPLOY, COMPILE_DEPLOY, written exactly so, not `start`"
    );
    assert_eq!(
        message(text, "/deployPlanItems/1/containerExecMethod"),
        "`containerExecMethod` is PARALLEL or SEQUENTIAL, written exactly so, not `parallel`"
    );
    assert_eq!(
        message(text, "/deployPlanItems/2/serviceId"),
        "the organisation has no service 999"
    );
    assert!(
        message(text, "/deployPlanItems/1/httpSrcUri")
            .starts_with("`httpSrcUri` is required when `deployment` is HTTP_UPLOAD_DEPLOY")
    );
    assert!(message(text, "/deployPlanItems/3/serviceId").contains("not `abc`"));
}

#[test]
fn a_key_in_the_wrong_case_is_an_unknown_key_never_an_empty_plan() {
    let text = "Comment: x\nDeployPlanItems:\n  - serviceId: 111\n    deployment: START\n";
    assert_eq!(
        problems(text),
        [
            ("/Comment".to_string(), 1, 1),
            ("/deployPlanItems".to_string(), 1, 1),
            ("/DeployPlanItems".to_string(), 2, 1),
        ]
    );
    assert_eq!(
        message(text, "/DeployPlanItems"),
        "unknown key `DeployPlanItems` (keys are case-sensitive: `deployPlanItems`); the keys here are comment, deployPlanItems"
    );
    let text = "deployPlanItems:\n  - serviceid: 111\n    Deployment: START\n";
    assert_eq!(
        problems(text),
        [
            ("/deployPlanItems/0/deployment".to_string(), 2, 5),
            ("/deployPlanItems/0/serviceId".to_string(), 2, 5),
            ("/deployPlanItems/0/serviceid".to_string(), 2, 5),
            ("/deployPlanItems/0/Deployment".to_string(), 3, 5),
        ]
    );
}

#[test]
fn compile_deploy_needs_its_repository_and_branch() {
    let text = "deployPlanItems:\n  - serviceId: 111\n    deployment: COMPILE_DEPLOY\n";
    assert_eq!(
        problems(text),
        [
            ("/deployPlanItems/0/compileRepoBranch".to_string(), 2, 5),
            ("/deployPlanItems/0/compileRepoPath".to_string(), 2, 5),
        ]
    );
    for branch in ["-x", "a..b", "a b", "x.lock", "a:b", "refs/@{1}"] {
        let text = format!(
            "deployPlanItems:\n  - serviceId: 111\n    deployment: COMPILE_DEPLOY\n    compileRepoPath: https://git.example.com/a.git\n    compileRepoBranch: '{branch}'\n"
        );
        assert_eq!(
            problems(&text),
            [("/deployPlanItems/0/compileRepoBranch".to_string(), 5, 24)],
            "{branch}"
        );
    }
    let good = "deployPlanItems:\n  - serviceId: 111\n    deployment: COMPILE_DEPLOY\n    compileRepoPath: https://git.example.com/a.git\n    compileRepoBranch: release/2.1\n";
    let item = &parse(good, OWNED).unwrap().deploy_plan_items[0];
    assert_eq!(item.compile_repo_branch.as_deref(), Some("release/2.1"));
}

#[test]
fn urls_are_http_without_credentials() {
    for (uri, says) in [
        ("https://blocked.example/a.zip", "not from there"),
        ("file:///etc/passwd", "not an http or https URL"),
        ("http://user:secret@example.com/a.zip", "holds credentials"),
        ("not a url", "is not a URL"),
    ] {
        let text = format!(
            "deployPlanItems:\n  - serviceId: 111\n    deployment: HTTP_UPLOAD_DEPLOY\n    httpSrcUri: '{uri}'\n"
        );
        let message = message(&text, "/deployPlanItems/0/httpSrcUri");
        assert!(message.contains(says), "{uri}: {message}");
    }
}

#[test]
fn the_shape_of_the_document_is_checked() {
    assert_eq!(problems(""), [("".to_string(), 1, 1)]);
    assert_eq!(problems("- a\n- b\n"), [("".to_string(), 1, 1)]);
    assert_eq!(
        problems("deployPlanItems: []\n"),
        [("/deployPlanItems".to_string(), 1, 18)]
    );
    assert_eq!(
        problems("deployPlanItems: many\n"),
        [("/deployPlanItems".to_string(), 1, 18)]
    );
    assert_eq!(
        problems("deployPlanItems:\n  - START\n"),
        [("/deployPlanItems/0".to_string(), 2, 5)]
    );
    assert_eq!(
        problems("comment: [a]\ndeployPlanItems:\n  - {serviceId: 111, deployment: START}\n"),
        [("/comment".to_string(), 1, 10)]
    );
    // A key given twice.
    assert_eq!(
        problems(
            "deployPlanItems:\n  - serviceId: 111\n    serviceId: 222\n    deployment: START\n"
        ),
        [("/deployPlanItems/0/serviceId".to_string(), 3, 5)]
    );
    // Quoted numbers are strings.
    assert_eq!(
        problems("deployPlanItems:\n  - serviceId: '111'\n    deployment: START\n"),
        [("/deployPlanItems/0/serviceId".to_string(), 2, 16)]
    );
}

#[test]
fn one_service_is_once_in_a_wave() {
    let text = "deployPlanItems:\n  - serviceId: 111\n    deployment: START\n  - serviceId: 111\n    deployment: STOP\n  - serviceId: 111\n    priority: 1\n    deployment: RESTART\n";
    assert_eq!(
        problems(text),
        [("/deployPlanItems/1/serviceId".to_string(), 4, 16)]
    );
    assert!(message(text, "/deployPlanItems/1/serviceId").contains("also at /deployPlanItems/0"));
}

#[test]
fn labels_are_checked_as_a_services_are() {
    let text = "deployPlanItems:\n  - serviceId: 111\n    deployment: START\n    deployLabel: 'ok,,bad key,slipway.own=x'\n";
    let all = parse(text, OWNED).unwrap_err();
    assert!(all.len() >= 3, "{all:?}");
    assert!(
        all.iter()
            .all(|p| p.path == "/deployPlanItems/0/deployLabel" && p.line == 4)
    );
}

#[test]
fn hostile_documents_are_refused_with_one_problem() {
    // Aliases (the billion laughs) are refused outright.
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\ndeployPlanItems: [*b, *b]\n";
    let [problem] = &parse(laughs, OWNED).unwrap_err()[..] else {
        panic!("one problem");
    };
    assert_eq!((problem.line, problem.column), (2, 8));
    assert!(problem.message.contains("aliases"), "{}", problem.message);
    // Deep nesting.
    let deep = format!(
        "deployPlanItems: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(parse(&deep, OWNED).unwrap_err().len(), 1);
    // Too many items.
    let many: String = std::iter::once("deployPlanItems:\n".to_string())
        .chain((0..=MAX_ITEMS).map(|_| "  - {serviceId: 111, deployment: START}\n".to_string()))
        .collect();
    assert_eq!(problems(&many), [("/deployPlanItems".to_string(), 2, 3)]);
    // Two documents; not YAML.
    assert_eq!(parse("a: 1\n---\nb: 2\n", OWNED).unwrap_err().len(), 1);
    let broken = parse("deployPlanItems: [\n", OWNED).unwrap_err();
    assert!(
        broken[0].message.starts_with("the plan is not YAML"),
        "{broken:?}"
    );
}
