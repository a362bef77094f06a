//! Many services in one repository (`ecrbuild.toml`): a five-service fixture with a git history, built
//! against the rig's real daemon and registry. Each commit changes one kind of input; the run must build
//! exactly the services whose inputs changed and reuse the others' images registry-side (with no daemon
//! when nothing needs a build), and `ecrbuild plan`, asked first, must predict exactly what the run does.

mod support;

use serde_json::Value;

use support::services::*;
use support::*;

/// What a plan's action becomes in the run.
fn run_actions_for(plan_action: &str) -> &'static [&'static str] {
    match plan_action {
        "build" => &["built", "failed"],
        "reuse" => &["reused"],
        "skip" => &["skipped"],
        other => panic!("unknown plan action {other:?}"),
    }
}

/// How a run is made: its flags (given to the plan too), whether a daemon answers the plan and the run,
/// its exit code.
struct Step<'a> {
    args: &'a [&'a str],
    plan_daemon: bool,
    daemon: bool,
    code: i32,
}

/// A run with the daemon, exiting 0.
const WITH_DAEMON: Step = Step {
    args: &[],
    plan_daemon: false,
    daemon: true,
    code: 0,
};

/// A run with `DOCKER_HOST` on a dead socket, exiting 0.
const NO_DAEMON: Step = Step {
    args: &[],
    plan_daemon: false,
    daemon: false,
    code: 0,
};

/// `ecrbuild plan` (no daemon unless `step.plan_daemon`), which must decide `plan`; then the run, which
/// must do what the plan said, for the same services, with the same input digests. The run's output.
#[track_caller]
fn plan_then_run(repo: &ServiceRepo, plan: &[(String, String)], step: Step) -> Value {
    let (plan_run, planned) = repo.plan_with(step.args, step.plan_daemon);
    assert_eq!(actions(&planned), plan, "the plan\n{}", plan_run.stderr);
    for (name, action) in plan {
        let entry = entry(&planned, name);
        assert_eq!(entry["repository"], repo.repository(name), "{entry:#}");
        assert!(
            entry["reason"]
                .as_str()
                .is_some_and(|r| !r.trim().is_empty()),
            "{name}: the plan gives no reason: {entry:#}"
        );
        if action == "reuse" {
            assert!(entry["reuse_from"].is_string(), "{name}: {entry:#}");
        } else {
            assert!(
                entry.get("reuse_from").is_none_or(Value::is_null),
                "{name}: {entry:#}"
            );
        }
    }

    let (result, ran) = repo.build(step.args, step.daemon, step.code);
    let context = format!(
        "plan:\n{planned:#}\nrun:\n{ran:#}\n--- stderr\n{}",
        result.stderr
    );
    let names = |json: &Value| {
        actions(json)
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&ran),
        names(&planned),
        "the run and the plan list other services\n{context}"
    );
    for (name, action) in plan {
        let (planned, ran) = (entry(&planned, name), entry(&ran, name));
        let done = ran["action"].as_str().unwrap_or_default();
        assert!(
            run_actions_for(action).contains(&done),
            "{name}: planned {action:?}, the run did {done:?}\n{context}"
        );
        if !planned["inputs"].is_null() && !ran["inputs"].is_null() {
            assert_eq!(
                planned["inputs"], ran["inputs"],
                "{name}: the plan and the run computed other input digests\n{context}"
            );
        }
        if action == "reuse" {
            assert_eq!(
                planned["reuse_from"], ran["reused_from"],
                "{name}: the run reused another commit's image than planned\n{context}"
            );
        }
    }
    ran
}

/// An input digest as the contract writes it: `sha256:<64 hex>`.
#[track_caller]
fn inputs_of(entry: &Value) -> String {
    let inputs = entry["inputs"].as_str().unwrap_or_default();
    let hex = inputs.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "not an input digest: {entry:#}"
    );
    inputs.to_string()
}

/// What the registry holds for each service of a run of the commit checked out: a built or reused image
/// under the SHA tag (the JSON's digest) with the SHA as revision and its input digest as label, `latest`
/// on the newest commit; a failed service without a SHA tag.
#[track_caller]
fn assert_published(repo: &ServiceRepo, ran: &Value) {
    let registry = repo.http();
    let sha = repo.head();
    for (name, _) in actions(ran) {
        let name = name.as_str();
        let entry = entry(ran, name);
        let repository = repo.repository(name);
        assert_eq!(entry["repository"], repository, "{entry:#}");
        match entry["action"].as_str().unwrap_or_default() {
            "built" | "reused" => {
                let digest = registry.present_digest(&repository, sha);
                assert_eq!(
                    entry["digest"], digest,
                    "{name}: the JSON's digest\n{entry:#}"
                );
                let labels = &registry.config(&repository, sha)["config"]["Labels"];
                assert_eq!(labels[REVISION_LABEL], sha, "{name}: revision\n{labels:#}");
                let inputs = inputs_of(entry);
                assert_eq!(
                    labels[INPUTS_LABEL], inputs,
                    "{name}: inputs label\n{labels:#}"
                );
                assert_latest_on(&registry, &repository, repo.newest(), name);
                if entry["action"] == "built" {
                    let lookup = format!("ecrbuild-inputs-{}", &inputs["sha256:".len()..]);
                    assert_eq!(
                        registry.digest(&repository, &lookup),
                        Some(digest),
                        "{name}: the input digest's tag is not the built image"
                    );
                } else {
                    assert_reused(repo, name, entry);
                }
            }
            "skipped" => {
                registry.present_digest(&repository, sha);
            }
            "failed" => {
                assert_eq!(
                    registry.digest(&repository, sha),
                    None,
                    "{name} failed but has a SHA tag"
                );
                assert!(
                    entry["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{name}: failed without an error: {entry:#}"
                );
            }
            other => panic!("{name}: unknown action {other:?}: {entry:#}"),
        }
    }
}

/// A reused image: the layers of the image it reused, under a new config (the new commit's labels) with
/// the same input digest.
#[track_caller]
fn assert_reused(repo: &ServiceRepo, name: &str, entry: &Value) {
    let registry = repo.http();
    let repository = repo.repository(name);
    let from = entry["reused_from"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: reused without reused_from: {entry:#}"));
    assert_ne!(from, repo.head(), "{name} reused its own commit");
    assert_eq!(
        layers(&registry, &repository, repo.head()),
        layers(&registry, &repository, from),
        "{name}: the reused image has other layers than {from}'s"
    );
    assert_eq!(
        diff_ids(&registry, &repository, repo.head()),
        diff_ids(&registry, &repository, from),
        "{name}: the reused image has other diff_ids than {from}'s"
    );
    assert_ne!(
        registry.present_digest(&repository, repo.head()),
        registry.present_digest(&repository, from),
        "{name}: the reused image kept {from}'s config (its labels)"
    );
    assert_eq!(
        registry.config(&repository, from)["config"]["Labels"][INPUTS_LABEL],
        entry["inputs"],
        "{name}: reused an image of other inputs"
    );
}

/// `ecrbuild plan --output github-matrix` (no daemon): appended to `$GITHUB_OUTPUT`, a matrix of exactly
/// `builds` (service and repository), and their count; the text table on stdout.
#[track_caller]
fn assert_matrix(repo: &ServiceRepo, builds: &[&str]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "earlier=kept\n").unwrap();
    let result = run(repo
        .ecrbuild(&["plan", "--output", "github-matrix"])
        .env("DOCKER_HOST", DEAD_DOCKER_HOST)
        .env("GITHUB_OUTPUT", file.path()));
    result.assert_code(0);
    for name in SERVICES {
        assert!(
            result.stdout.contains(name),
            "{name} missing from the table:\n{}",
            result.stdout
        );
    }
    let outputs = github_outputs(file.path());
    assert_eq!(
        outputs[0],
        ("earlier".into(), "kept".into()),
        "not appended: {outputs:?}"
    );
    let value = |key: &str| {
        let found: Vec<_> = outputs.iter().filter(|(k, _)| k == key).collect();
        assert_eq!(found.len(), 1, "one {key}= line: {outputs:?}");
        found[0].1.clone()
    };
    let matrix: Value = serde_json::from_str(&value("matrix")).expect("matrix= is JSON");
    let include: Vec<(String, String)> = matrix["include"]
        .as_array()
        .unwrap_or_else(|| panic!("matrix without include: {matrix}"))
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("service"), field("repository"))
        })
        .collect();
    let wanted: Vec<(String, String)> = builds
        .iter()
        .map(|n| (n.to_string(), repo.repository(n)))
        .collect();
    assert_eq!(include, wanted, "the matrix: {matrix}");
    assert_eq!(value("builds"), builds.len().to_string());
}

/// The fixture, first published: the plan says build for all five, the run builds and publishes them.
fn published(test: &str) -> ServiceRepo {
    let repo = ServiceRepo::with_bases(test);
    assert_matrix(&repo, &SERVICES);
    let ran = plan_then_run(&repo, &expected("build", &[]), WITH_DAEMON);
    assert_eq!(actions(&ran), expected("built", &[]), "{ran:#}");
    assert_published(&repo, &ran);
    let registry = repo.http();
    // The file's build-args reach the build.
    let labels = &registry.config(&repo.repository("ui"), repo.head())["config"]["Labels"];
    assert_eq!(labels["flavour"], "vanilla", "{labels:#}");
    // Five services, five input digests.
    let mut inputs: Vec<String> = SERVICES.iter().map(|n| inputs_of(entry(&ran, n))).collect();
    inputs.sort();
    inputs.dedup();
    assert_eq!(inputs.len(), SERVICES.len(), "{ran:#}");
    repo
}

/// The tags of every service's repository.
fn all_tags(repo: &ServiceRepo) -> Vec<Vec<String>> {
    let registry = repo.http();
    SERVICES
        .iter()
        .map(|n| registry.tags(&repo.repository(n)))
        .collect()
}

#[test]
fn the_first_run_builds_all_five_and_a_rerun_of_the_commit_skips_them_without_a_daemon() {
    let repo = published("first");
    let before = all_tags(&repo);
    assert_matrix(&repo, &[]);
    let ran = plan_then_run(&repo, &expected("skip", &[]), NO_DAEMON);
    assert_eq!(actions(&ran), expected("skipped", &[]), "{ran:#}");
    assert_published(&repo, &ran);
    assert_eq!(
        all_tags(&repo),
        before,
        "a run that skipped everything wrote tags"
    );

    // The text summary: one row per service with its action.
    let text = run(repo.ecrbuild(&[]).env("DOCKER_HOST", DEAD_DOCKER_HOST));
    text.assert_code(0);
    for name in SERVICES {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains("skipped")),
            "no row `{name} ... skipped` in the summary:\n{}",
            text.stdout
        );
    }

    // --service picks services (repeatable), listed in name order.
    let (_, picked) = repo.plan(&["--service", "ui", "--service", "cart"]);
    assert_eq!(
        actions(&picked),
        [("cart".into(), "skip".into()), ("ui".into(), "skip".into())],
        "{picked:#}"
    );
}

#[test]
fn a_readme_commit_reuses_all_five_images_without_a_daemon() {
    let mut repo = published("readme");
    let first = repo.head().to_string();
    // The top-level README is read by nothing; orders' README is left out by its .dockerignore.
    repo.write("README.md", "# Five services\n\nNow documented.\n");
    repo.write("services/orders/README.md", "# orders\n\nNow documented.\n");
    repo.commit("docs only");
    assert_matrix(&repo, &[]);
    let ran = plan_then_run(&repo, &expected("reuse", &[]), NO_DAEMON);
    assert_eq!(actions(&ran), expected("reused", &[]), "{ran:#}");
    for name in SERVICES {
        assert_eq!(entry(&ran, name)["reused_from"], first, "{name}: {ran:#}");
    }
    assert_published(&repo, &ran);
}

#[test]
fn a_commit_to_one_service_builds_it_alone() {
    let mut repo = published("one");
    repo.write("services/checkout/src/checkout.txt", "checkout v2\n");
    repo.commit("checkout: v2");
    assert_matrix(&repo, &["checkout"]);
    let ran = plan_then_run(
        &repo,
        &expected("reuse", &[("checkout", "build")]),
        WITH_DAEMON,
    );
    assert_eq!(
        actions(&ran),
        expected("reused", &[("checkout", "built")]),
        "{ran:#}"
    );
    assert_published(&repo, &ran);
    let registry = repo.http();
    let checkout = repo.repository("checkout");
    assert_ne!(
        diff_ids(&registry, &checkout, repo.head()),
        diff_ids(&registry, &checkout, repo.previous()),
        "checkout was rebuilt from unchanged sources"
    );
}

#[test]
fn a_commit_to_the_shared_lib_builds_the_two_services_that_copy_it() {
    let mut repo = published("lib");
    repo.write("lib/shared.txt", "shared library v2\n");
    repo.commit("lib: v2");
    assert_matrix(&repo, &["cart", "catalog"]);
    let changed = [("cart", "build"), ("catalog", "build")];
    let ran = plan_then_run(&repo, &expected("reuse", &changed), WITH_DAEMON);
    let built = [("cart", "built"), ("catalog", "built")];
    assert_eq!(actions(&ran), expected("reused", &built), "{ran:#}");
    assert_published(&repo, &ran);
}

#[test]
fn a_retagged_base_rebuilds_only_the_services_built_from_it() {
    let mut repo = published("base");
    let registry = repo.http();
    let runtime = repo.repository("runtime");
    let old_base = diff_ids(&registry, &runtime, "1");
    // Another image under the same tag, moved in the registry only: the daemon still holds the old one.
    repo.push_base("runtime", "2", "runtime two");
    registry.copy_tag(&runtime, "2", "1");
    let new_base = diff_ids(&registry, &runtime, "1");
    assert_ne!(old_base, new_base);
    repo.commit("nothing but time");
    assert_matrix(&repo, &FROM_RUNTIME);
    let changed = FROM_RUNTIME.map(|n| (n, "build"));
    let ran = plan_then_run(&repo, &expected("reuse", &changed), WITH_DAEMON);
    let built = FROM_RUNTIME.map(|n| (n, "built"));
    assert_eq!(actions(&ran), expected("reused", &built), "{ran:#}");
    assert_published(&repo, &ran);
    for name in FROM_RUNTIME {
        let layers = diff_ids(&registry, &repo.repository(name), repo.head());
        assert_eq!(
            layers[..new_base.len()],
            new_base[..],
            "{name} was not built FROM the registry's runtime:1 (the daemon's stale copy?)"
        );
    }
    let base = diff_ids(&registry, &repo.repository("base"), "1");
    for name in FROM_BASE {
        let layers = diff_ids(&registry, &repo.repository(name), repo.head());
        assert_eq!(layers[..base.len()], base[..], "{name}");
    }
}

/// A base the registry cannot be asked about (its registry is down) but the daemon holds: identified by
/// its image ID, so a plan with the daemon finds the image to reuse; without the daemon nothing identifies
/// it, and the plan says build and why.
#[test]
fn a_base_only_on_the_daemon_is_identified_by_its_image_id() {
    let mut repo = published("daemonbase");
    let base = format!("127.0.0.1:9/{}/local:1", repo.prefix);
    import_image(&base, "only on the daemon");
    repo.write(
        "services/checkout/Dockerfile",
        &format!("FROM {base}\nCOPY services/checkout/src/ /srv/app/\n"),
    );
    repo.commit("checkout: FROM a base only the daemon has");
    let changed = [("checkout", "build")];
    let ran = plan_then_run(&repo, &expected("reuse", &changed), WITH_DAEMON);
    assert_eq!(
        actions(&ran),
        expected("reused", &[("checkout", "built")]),
        "{ran:#}"
    );
    assert_published(&repo, &ran);
    let built_at = repo.head().to_string();

    repo.write("README.md", "# Five services\n\nbase moved\n");
    repo.commit("docs");
    let (_, blind) = repo.plan(&[]);
    assert_eq!(actions(&blind), expected("reuse", &changed), "{blind:#}");
    let checkout = entry(&blind, "checkout");
    assert!(checkout["inputs"].is_null(), "{checkout:#}");
    assert!(
        checkout["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&base),
        "the reason does not name the base: {checkout:#}"
    );
    let step = Step {
        plan_daemon: true,
        ..WITH_DAEMON
    };
    let ran = plan_then_run(&repo, &expected("reuse", &[]), step);
    assert_eq!(actions(&ran), expected("reused", &[]), "{ran:#}");
    assert_eq!(entry(&ran, "checkout")["reused_from"], built_at, "{ran:#}");
    assert_published(&repo, &ran);
}

#[test]
fn a_broken_service_fails_alone_and_the_other_four_publish() {
    let mut repo = published("broken");
    let registry = repo.http();
    let cart = repo.repository("cart");
    let cart_tags = registry.tags(&cart);
    let cart_latest = registry.present_digest(&cart, "latest");
    let dockerfile = std::fs::read_to_string(repo.root.join("services/cart/Dockerfile")).unwrap();
    repo.write(
        "services/cart/Dockerfile",
        &format!("{dockerfile}COPY services/cart/missing/ /srv/missing/\n"),
    );
    repo.write("services/ui/src/index.html", "<h1>ui v2</h1>\n");
    repo.commit("cart: copy what is not there; ui: v2");
    assert_matrix(&repo, &["cart", "ui"]);
    let changed = [("cart", "build"), ("ui", "build")];
    let ran = plan_then_run(
        &repo,
        &expected("reuse", &changed),
        Step {
            code: 5,
            ..WITH_DAEMON
        },
    );
    let done = [("cart", "failed"), ("ui", "built")];
    assert_eq!(actions(&ran), expected("reused", &done), "{ran:#}");
    assert_eq!(entry(&ran, "cart")["exit_code"], 5, "{ran:#}");
    assert_published(&repo, &ran);
    assert_eq!(
        registry.tags(&cart),
        cart_tags,
        "the failed service pushed something"
    );
    assert_eq!(
        registry.present_digest(&cart, "latest"),
        cart_latest,
        "cart's latest moved"
    );

    // Fixed: cart's inputs are the first commit's again, so that image is found and reused (by its
    // inputs, not by being the previous commit's), and ui's from the broken commit.
    repo.write("services/cart/Dockerfile", &dockerfile);
    repo.commit("cart: fixed");
    assert_matrix(&repo, &[]);
    let ran = plan_then_run(&repo, &expected("reuse", &[]), NO_DAEMON);
    assert_eq!(actions(&ran), expected("reused", &[]), "{ran:#}");
    assert_eq!(entry(&ran, "cart")["reused_from"], repo.shas[0], "{ran:#}");
    assert_eq!(entry(&ran, "ui")["reused_from"], repo.shas[1], "{ran:#}");
    assert_published(&repo, &ran);
}

#[test]
fn an_older_commit_reused_after_a_newer_one_leaves_latest_on_the_newer() {
    let mut repo = published("older");
    repo.write("README.md", "# Five services\n\nsecond\n");
    let older = repo.commit("docs: second");
    repo.write("README.md", "# Five services\n\nthird\n");
    repo.commit("docs: third");
    let ran = plan_then_run(&repo, &expected("reuse", &[]), NO_DAEMON);
    assert_eq!(actions(&ran), expected("reused", &[]), "{ran:#}");
    assert_published(&repo, &ran);

    // The commit between them, published last: its SHA tags, and `latest` stays on the newest.
    repo.checkout(&older);
    let ran = plan_then_run(&repo, &expected("reuse", &[]), NO_DAEMON);
    assert_eq!(actions(&ran), expected("reused", &[]), "{ran:#}");
    assert_published(&repo, &ran);
}

#[test]
fn command_line_build_args_override_the_files_for_the_services_picked() {
    let mut repo = published("args");
    repo.commit("nothing but time");
    let args = ["--service", "ui", "--build-arg", "FLAVOUR=chocolate"];
    let ran = plan_then_run(
        &repo,
        &[("ui".into(), "build".into())],
        Step {
            args: &args,
            ..WITH_DAEMON
        },
    );
    assert_eq!(actions(&ran), [("ui".into(), "built".into())], "{ran:#}");
    assert_published(&repo, &ran);
    let labels = &repo.http().config(&repo.repository("ui"), repo.head())["config"]["Labels"];
    assert_eq!(labels["flavour"], "chocolate", "{labels:#}");
    assert_eq!(
        repo.http().digest(&repo.repository("cart"), repo.head()),
        None,
        "a service not picked was published"
    );
}

#[test]
fn dash_f_builds_one_image_as_before_beside_an_ecrbuild_toml() {
    let repo = ServiceRepo::with_bases("dashf");
    let repository = format!("{}/single", repo.prefix);
    let result = run(&mut repo.ecrbuild(&[
        "-f",
        "services/checkout/Dockerfile",
        "--registry",
        &repo.registry,
        "--repository",
        &repository,
        "--output",
        "json",
    ]));
    result.assert_code(0);
    let json = parse_json(&result);
    assert!(
        json.get("services").is_none(),
        "services mode with -f: {json:#}"
    );
    let digest = repo.http().present_digest(&repository, repo.head());
    assert_eq!(json["digest"], digest, "{json:#}");
    assert!(
        all_tags(&repo).iter().all(Vec::is_empty),
        "a service was published"
    );
}

#[test]
fn rebuild_and_no_cache_build_what_could_be_reused() {
    let mut repo = published("rebuild");
    repo.commit("nothing but time");
    let step = Step {
        args: &["--rebuild"],
        ..WITH_DAEMON
    };
    let ran = plan_then_run(&repo, &expected("build", &[]), step);
    assert_eq!(actions(&ran), expected("built", &[]), "{ran:#}");
    assert_published(&repo, &ran);

    repo.commit("nothing but time, again");
    let step = Step {
        args: &["--no-cache", "--service", "orders"],
        ..WITH_DAEMON
    };
    let ran = plan_then_run(&repo, &[("orders".into(), "build".into())], step);
    assert_eq!(
        actions(&ran),
        [("orders".into(), "built".into())],
        "{ran:#}"
    );
    assert_published(&repo, &ran);
}

/// A fixture whose `ecrbuild.toml` is `text`: the run's exit code and stderr.
fn with_config(text: &str, args: &[&str]) -> Run {
    let repo = ServiceRepo::new("config");
    repo.write("ecrbuild.toml", text);
    run(repo.ecrbuild(args).env("DOCKER_HOST", DEAD_DOCKER_HOST))
}

/// Whether stderr names line `line` of ecrbuild.toml.
fn names_line(stderr: &str, line: usize) -> bool {
    stderr.contains(&format!("line {line}")) || stderr.contains(&format!("ecrbuild.toml:{line}"))
}

#[test]
fn a_bad_ecrbuild_toml_or_service_name_exits_2_and_says_what_is_wrong() {
    let repo = ServiceRepo::new("names");
    let good = repo.config_text();
    // An unknown key, on line 6 of the file.
    let mut lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines[3], "[services.ui]", "{good}");
    lines.insert(5, "dockerfiel = \"services/ui/Dockerfile\"");
    let unknown = lines.join("\n");
    for args in [&["--output", "json"][..], &["plan", "--output", "json"]] {
        let result = with_config(&unknown, args);
        result
            .assert_code(2)
            .assert_stderr_contains("ecrbuild.toml");
        result.assert_stderr_contains("dockerfiel");
        assert!(
            names_line(&result.stderr, 6),
            "no line 6 in:\n{}",
            result.stderr
        );
    }
    // A bad value: a context that is not a string, on line 6 too.
    lines[5] = "context = 5";
    let result = with_config(&lines.join("\n"), &["--output", "json"]);
    result
        .assert_code(2)
        .assert_stderr_contains("ecrbuild.toml");
    result.assert_stderr_contains("context");
    assert!(
        names_line(&result.stderr, 6),
        "no line 6 in:\n{}",
        result.stderr
    );

    // A Dockerfile path that names nothing: exit 2, naming the service's key, not the `-f` advice.
    let wrong_path = good.replacen(
        "dockerfile = \"services/ui/Dockerfile\"",
        "dockerfile = \"services/ui/Nope.Dockerfile\"",
        1,
    );
    assert_ne!(
        wrong_path, good,
        "the fixture's ui Dockerfile line moved:\n{good}"
    );
    for args in [&["--output", "json"][..], &["plan", "--output", "json"]] {
        let result = with_config(&wrong_path, args);
        result
            .assert_code(2)
            .assert_stderr_contains("services.ui.dockerfile")
            .assert_stderr_contains("Nope.Dockerfile");
        assert!(!result.stderr.contains("-f/--file"), "{}", result.stderr);
    }

    // An unknown service: exit 2, naming the known ones, before anything is built.
    for sub in [&[][..], &["plan"]] {
        let mut cmd = repo.ecrbuild(sub);
        cmd.args(["--service", "nope"])
            .env("DOCKER_HOST", DEAD_DOCKER_HOST);
        let result = run(&mut cmd);
        result.assert_code(2).assert_stderr_contains("nope");
        for name in SERVICES {
            result.assert_stderr_contains(name);
        }
    }
    assert!(
        all_tags(&repo).iter().all(Vec::is_empty),
        "something was pushed"
    );
}

#[test]
fn services_lists_each_service_with_its_repository_dockerfile_and_context() {
    let repo = ServiceRepo::new("list");
    let result = run(ecrbuild().current_dir(&repo.root).arg("services"));
    result.assert_code(0);
    // The same file from a subdirectory (found at the git top level) and from elsewhere with --config.
    let below = run(ecrbuild()
        .current_dir(repo.root.join("services/ui"))
        .arg("services"));
    below.assert_code(0);
    assert_eq!(below.stdout, result.stdout, "from services/ui");
    let config = repo.root.join("ecrbuild.toml");
    let elsewhere =
        run(ecrbuild()
            .current_dir("/")
            .args(["services", "--config", path_str(&config)]));
    elsewhere.assert_code(0);
    assert_eq!(elsewhere.stdout, result.stdout, "with --config from /");
    let rows: Vec<Vec<&str>> = result
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        names, SERVICES,
        "one line per service, in name order:\n{}",
        result.stdout
    );
    for row in &rows {
        assert_eq!(
            row.len(),
            4,
            "NAME, REPOSITORY, DOCKERFILE, CONTEXT: {row:?}"
        );
        let name = row[0];
        assert_eq!(row[1], repo.repository(name), "{row:?}");
        assert!(
            row[2].ends_with(&format!("services/{name}/Dockerfile")),
            "{row:?}"
        );
        let context = row[3].trim_end_matches('/');
        if name == "orders" {
            assert!(context.ends_with("services/orders"), "{row:?}");
        } else {
            assert!(
                context == "." || context == repo.root.to_str().unwrap() || context.is_empty(),
                "{row:?}"
            );
        }
    }
}
