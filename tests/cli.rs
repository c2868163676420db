//! End-to-end through the `connector-host` binary: exit statuses, the JSON
//! shape, and a canary token that must never appear in any output.

use std::path::PathBuf;
use std::process::{Command, Output};

use connector_host::simulator::{Fault, FaultKind, Simulator, TokenProfile};
use serde_json::Value;

/// Every log line of ours and of the HTTP stack; only the compiler's own
/// tracing (megabytes per component) is left out.
const LOG_EVERYTHING: &str = "trace,cranelift_codegen=warn,cranelift_frontend=warn,\
     regalloc2=warn,wasmtime_cranelift=warn,wasmtime_environ=warn,wasmtime=info";

const CANARY: &str = "CANARY-5f1e2d7c-do-not-print-9a8b";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_connector-host"))
}

async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(binary());
        cmd.args(&args)
            .env_remove("S1_API_TOKEN")
            .env_remove("S1_CONSOLE")
            .env("RUST_LOG", LOG_EVERYTHING);
        // A proxy set where the tests run must not change their routes.
        for proxy_var in [
            "S1_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "no_proxy",
            "NO_PROXY",
        ] {
            cmd.env_remove(proxy_var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn validate_args(sim: &Simulator, console: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "validate".to_owned(),
        "--console".to_owned(),
        console.to_owned(),
        "--connect-to".to_owned(),
        format!("canary.sentinelone.net={}", sim.addr()),
        "--timeout".to_owned(),
        "1".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_token_never_appears_in_any_output() {
    let token_env = vec![("S1_API_TOKEN", CANARY.to_owned())];
    let profiles = [
        TokenProfile::admin("admin"),
        TokenProfile::admin("expiring")
            .expires_in(std::time::Duration::from_secs(86_400 * 3), false),
        TokenProfile::admin("restricted").role("Custom", &["Endpoints.view"]),
        TokenProfile::admin("429").fault(Fault::always(FaultKind::RateLimited { retry_after: 1 })),
        TokenProfile::admin("500").fault(Fault::always(FaultKind::PlainTextError)),
        TokenProfile::admin("malformed").fault(Fault::always(FaultKind::MalformedJson)),
        TokenProfile::admin("stall").fault(Fault::always(FaultKind::Stall)),
        TokenProfile::admin("expired").expires_in(std::time::Duration::from_secs(60), true),
    ];
    let mut outputs = Vec::new();
    for profile in profiles {
        let sim = Simulator::start().await.unwrap();
        sim.add_token(CANARY, profile);
        for extra in [&[][..], &["--json"][..]] {
            outputs.push(run(validate_args(&sim, "canary", extra), token_env.clone()).await);
        }
        assert!(sim.requests().iter().all(|r| {
            !r.path.contains(CANARY) && r.query.as_deref().is_none_or(|q| !q.contains(CANARY))
        }));
    }
    // Unknown token, token from a file and from a named variable, a token
    // with the canary inside junk, and hostile console values.
    let sim = Simulator::start().await.unwrap();
    outputs.push(
        run(
            validate_args(&sim, "canary", &["--json"]),
            token_env.clone(),
        )
        .await,
    );
    let dir = std::env::temp_dir().join(format!("canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("  {CANARY}\n")).unwrap();
    outputs.push(
        run(
            validate_args(&sim, "canary", &["--token-file", file.to_str().unwrap()]),
            vec![],
        )
        .await,
    );
    outputs.push(
        run(
            validate_args(&sim, "canary", &["--token-env", "MY_TOKEN"]),
            vec![("MY_TOKEN", CANARY.to_owned())],
        )
        .await,
    );
    outputs.push(
        run(
            validate_args(&sim, "canary", &["--json"]),
            vec![("S1_API_TOKEN", format!("ApiToken {CANARY}"))],
        )
        .await,
    );
    outputs.push(
        run(
            validate_args(&sim, "canary", &[]),
            vec![("S1_API_TOKEN", format!("{CANARY}\u{7}"))],
        )
        .await,
    );
    for console in [
        "http://canary.sentinelone.net",
        "127.0.0.1",
        "evil.example.com",
        "canary.invalid",
    ] {
        outputs.push(run(validate_args(&sim, console, &["--json"]), token_env.clone()).await);
    }
    // The response actions, on a simulator where the canary is an admin.
    let sim = Simulator::start().await.unwrap();
    sim.add_token(CANARY, TokenProfile::admin("admin"));
    for (cmd, selector) in [
        ("get-host", ["--hostname", "fin-lt-0042"]),
        ("get-host", ["--hostname", "RECEPTION-PC"]),
        ("isolate", ["--ip", "10.0.0.1"]),
        ("isolate", ["--ip", "10.0.0.1"]),
        ("isolate", ["--hostname", "DC-01"]),
        ("isolate", ["--mac", "00:11"]),
        ("release", ["--agent-id", "1900000000000000001"]),
    ] {
        for json_flag in [&[][..], &["--json"][..]] {
            let mut args = validate_args(&sim, "canary", json_flag);
            args[0] = cmd.to_owned();
            args.extend(selector.iter().map(|s| (*s).to_owned()));
            args.extend(["--protect".to_owned(), "DC-01".to_owned()]);
            outputs.push(run(args, token_env.clone()).await);
        }
    }
    // Threat ingestion, to stdout, with the progress and warnings on stderr.
    let mut args = validate_args(&sim, "canary", &["--page-size", "1000"]);
    args[0] = "threats".into();
    outputs.push(run(args, token_env.clone()).await);
    for cmd in [
        vec!["describe"],
        vec!["describe", "--json"],
        vec!["demo"],
        vec!["demo", "--json"],
    ] {
        outputs.push(
            run(
                cmd.into_iter().map(str::to_owned).collect(),
                token_env.clone(),
            )
            .await,
        );
    }
    assert!(outputs.len() >= 43);
    for output in &outputs {
        let all = text(output);
        assert!(!all.contains(CANARY), "token leaked:\n{all}");
        assert!(
            !all.contains("5f1e2d7c"),
            "part of the token leaked:\n{all}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_and_json_shape() {
    let sim = Simulator::start().await.unwrap();
    sim.add_token(CANARY, TokenProfile::admin("admin"));
    let env = vec![("S1_API_TOKEN", CANARY.to_owned())];

    let ok = run(validate_args(&sim, "canary", &["--json"]), env.clone()).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let v = json(&ok);
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["console_url"], "https://canary.sentinelone.net");
    assert_eq!(v["result"]["permissions"][0]["state"], "granted");
    assert_eq!(v["requests"].as_array().unwrap().len(), 4);
    assert_eq!(v["requests"][0]["method"], "POST");
    assert_eq!(v["requests"][0]["status"], 200);

    let denied = run(
        validate_args(&sim, "canary.example.com", &["--json"]),
        env.clone(),
    )
    .await;
    assert_eq!(denied.status.code(), Some(1));
    let v = json(&denied);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "egress-denied");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canary.example.com")
    );

    let bad = run(
        validate_args(&sim, "http://x.sentinelone.net", &["--json"]),
        env.clone(),
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(json(&bad)["error"]["kind"], "invalid-config");

    let unauthorized = run(
        validate_args(&sim, "canary", &[]),
        vec![("S1_API_TOKEN", "wrong-token-value".into())],
    )
    .await;
    assert_eq!(unauthorized.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unauthorized.stderr).contains("Connector error (unauthorized)")
    );

    // Usage errors: no token, a non-loopback route, an unknown flag.
    let no_token = run(validate_args(&sim, "canary", &["--json"]), vec![]).await;
    assert_eq!(no_token.status.code(), Some(2));
    assert_eq!(json(&no_token)["error"]["kind"], "usage");
    let mut args = validate_args(&sim, "canary", &[]);
    args.extend([
        "--connect-to".into(),
        "canary.sentinelone.net=10.0.0.5:443".into(),
    ]);
    let remote = run(args, env.clone()).await;
    assert_eq!(remote.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("loopback"));
    let unknown = run(
        vec!["validate".into(), "--token".into(), "x".into()],
        env.clone(),
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    // A token "file" that never ends (its length reads as 0) is refused after
    // the cap, not read until memory runs out.
    let endless = run(
        validate_args(&sim, "canary", &["--token-file", "/dev/zero"]),
        vec![],
    )
    .await;
    assert_eq!(endless.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&endless.stderr).contains("is over 65536 bytes"));
    // So are a CA file and a component file that never end.
    for (flag, cap) in [("--ca-file", 4 << 20), ("--component", 64 << 20)] {
        let mut args = vec![flag.to_owned(), "/dev/zero".to_owned()];
        args.extend(validate_args(&sim, "canary", &[]));
        let endless = run(args, env.clone()).await;
        assert_eq!(endless.status.code(), Some(2));
        let expected = format!("{flag} /dev/zero is over {cap} bytes");
        assert!(String::from_utf8_lossy(&endless.stderr).contains(&expected));
    }
    let mut args = vec!["threats".into(), "--console".into(), "canary".into()];
    args.extend(["--checkpoint-file".into(), "/dev/zero".into()]);
    let endless = run(args, env.clone()).await;
    assert_eq!(endless.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&endless.stderr).contains("is not a checkpoint file"));
    // Some other JSON file is refused and left as it was, not taken for
    // "no checkpoint yet" and overwritten.
    let dir = std::env::temp_dir().join(format!("cli-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (foreign, why) in [
        ("{}", "no \"checkpoint\" field"),
        (r#"{"log_level":"debug"}"#, "no \"checkpoint\" field"),
        (
            r#"{"checkpoint":"c1","extra":1}"#,
            "unknown field `extra`, expected `checkpoint` or `output_bytes`",
        ),
    ] {
        let file = dir.join("settings.json");
        std::fs::write(&file, foreign).unwrap();
        let mut args = vec!["threats".into(), "--console".into(), "canary".into()];
        args.extend(["--checkpoint-file".into(), file.display().to_string()]);
        let refused = run(args, env.clone()).await;
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("is not a checkpoint file") && stderr.contains(why),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), foreign);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let demo = run(vec!["demo".into(), "--json".into()], vec![]).await;
    assert_eq!(demo.status.code(), Some(0), "{}", text(&demo));
    let v = json(&demo);
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["steps"][2]["error"]["kind"], "unauthorized");

    // Actions: exactly one selector; JSON results and candidates.
    let action = |cmd: &str, selector: &[&str]| {
        let mut args = validate_args(&sim, "canary", &["--json"]);
        args[0] = cmd.to_owned();
        args.extend(selector.iter().map(|s| (*s).to_owned()));
        args
    };
    let two = run(
        action(
            "isolate",
            &["--ip", "10.0.0.1", "--hostname", "FIN-LT-0042"],
        ),
        env.clone(),
    )
    .await;
    assert_eq!(
        two.status.code(),
        Some(2),
        "two selectors are a usage error"
    );
    let none = run(action("isolate", &[]), env.clone()).await;
    assert_eq!(none.status.code(), Some(2), "a selector is required");
    let isolated = run(
        action("isolate", &["--ip", "10.0.0.1", "--wait", "5"]),
        env.clone(),
    )
    .await;
    assert_eq!(isolated.status.code(), Some(0), "{}", text(&isolated));
    let v = json(&isolated);
    assert_eq!(v["result"]["changed"], true);
    assert_eq!(v["result"]["network_state"], "disconnected");
    assert_eq!(v["result"]["host"]["hostname"], "FIN-LT-0042");
    assert!(
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "/web/api/v2.1/agents/actions/disconnect")
    );
    let again = json(&run(action("isolate", &["--ip", "10.0.0.1"]), env.clone()).await);
    assert_eq!(again["result"]["changed"], false);
    let ambiguous = run(
        action("get-host", &["--hostname", "RECEPTION-PC"]),
        env.clone(),
    )
    .await;
    assert_eq!(ambiguous.status.code(), Some(1));
    let v = json(&ambiguous);
    assert_eq!(v["error"]["kind"], "ambiguous");
    assert_eq!(v["error"]["candidates"].as_array().unwrap().len(), 2);
    let protected = run(
        action("isolate", &["--hostname", "DC-01", "--protect", "dc-01"]),
        env.clone(),
    )
    .await;
    assert_eq!(json(&protected)["error"]["kind"], "protected-host");
    let too_long = run(
        action("isolate", &["--hostname", "DC-01", "--wait", "301"]),
        env.clone(),
    )
    .await;
    assert_eq!(too_long.status.code(), Some(2));

    let describe = run(vec!["describe".into(), "--json".into()], vec![]).await;
    assert_eq!(describe.status.code(), Some(0));
    assert_eq!(
        json(&describe)["result"]["connection_fields"][1]["secret"],
        true
    );
}

/// `connector-host … | head` closes stdout early: the command must finish
/// its work with its own exit status, not panic on the broken pipe.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    for args in [&["describe"][..], &["describe", "--json"], &["demo"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(binary())
            .args(args)
            .env_remove("S1_API_TOKEN")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threats_killed_at_random_points_deliver_each_version_once_to_the_output_file() {
    use std::collections::HashSet;
    let sim = Simulator::start().await.unwrap();
    sim.add_token(CANARY, TokenProfile::admin("killed").threat_churn(20));
    let dir = std::env::temp_dir().join(format!("threats-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (checkpoint, out) = (dir.join("checkpoint.json"), dir.join("threats.ndjson"));
    let mut args = validate_args(&sim, "canary", &["--page-size", "50"]);
    args[0] = "threats".into();
    args.extend([
        "--checkpoint-file".into(),
        checkpoint.display().to_string(),
        "--output".into(),
        out.display().to_string(),
    ]);
    // SIGKILL at staggered points: before the first page, mid-pull, late.
    for delay_ms in [60u64, 170, 260, 340, 450, 580, 700, 900] {
        let mut child = Command::new(binary())
            .args(&args)
            .env("S1_API_TOKEN", CANARY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let _ = child.kill();
        let _ = child.wait();
    }
    // The kills landed mid-pull: some pages were committed, not all.
    let committed = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(
        checkpoint.exists() && committed > 0,
        "no page was committed before the kills"
    );
    // Then run to completion until a run adds nothing (updates keep coming
    // for the first 20 pages).
    let mut previous = u64::MAX;
    for _ in 0..10 {
        let done = run(args.clone(), vec![("S1_API_TOKEN", CANARY.to_owned())]).await;
        assert_eq!(done.status.code(), Some(0), "{}", text(&done));
        assert!(!text(&done).contains(CANARY));
        let len = std::fs::metadata(&out).unwrap().len();
        if len == previous {
            break;
        }
        previous = len;
    }
    let content = std::fs::read_to_string(&out).unwrap();
    let mut delivered = HashSet::new();
    for line in content.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        let key = (
            v["id"].as_str().unwrap().to_owned(),
            v["updated_at"].as_str().map(str::to_owned),
        );
        assert!(delivered.insert(key.clone()), "delivered twice: {key:?}");
        assert_eq!(v["raw"]["id"], v["id"], "raw embedded as JSON");
    }
    for (id, at) in sim.threat_versions() {
        if at.is_some() {
            assert!(
                delivered.contains(&(id.clone(), at.clone())),
                "missing {id} {at:?}"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threats_follow_rides_out_a_console_outage_but_not_a_bad_token() {
    let sim = Simulator::start().await.unwrap();
    // Two polls in a row fail with a server error the connector does not
    // retry itself; the third succeeds.
    let outage = Fault::first(2, FaultKind::PlainTextError).on_path("/threats");
    sim.add_token(CANARY, TokenProfile::admin("outage").fault(outage));
    let dir = std::env::temp_dir().join(format!("threats-follow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("threats.ndjson");
    let mut args = validate_args(&sim, "canary", &["--page-size", "1000"]);
    args[0] = "threats".into();
    args.extend(["--follow", "--interval", "1s", "--output"].map(String::from));
    args.push(out.display().to_string());
    let child = Command::new(binary())
        .args(&args)
        .env("S1_API_TOKEN", CANARY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every threat is written, then stop it as Ctrl-C would.
    let expected = sim.threat_versions().len();
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|c| c.lines().count())
            .unwrap_or(0)
    };
    for _ in 0..200 {
        if lines() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(lines(), expected, "{stderr}");
    assert_eq!(
        stderr.matches("retrying in 1 s").count(),
        2,
        "one retry per failed poll: {stderr}"
    );
    assert!(stderr.contains("Connector error (upstream)"), "{stderr}");
    assert!(!stderr.contains(CANARY));

    // A token the console rejects needs a person: --follow stops at once.
    let bad = run(args, vec![("S1_API_TOKEN", "wrong-token".to_owned())]).await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("Connector error (unauthorized)"));
    assert!(!text(&bad).contains("retrying"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The benchmark's figures are a JSON object with name, value, unit and
/// target each; the quick run checks the shape, not the speed. It measures
/// the `--component` it is given: here the connector with a 1000-byte custom
/// section appended, so only its size differs.
#[tokio::test]
async fn bench_prints_every_figure_as_json() {
    let dir = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("padded.wasm");
    let mut padded = connector_host::COMPONENT.to_vec();
    // Custom section: id 0, size 1000 (LEB128), name "pad", then payload.
    padded.extend([0x00, 0xe8, 0x07, 0x03, b'p', b'a', b'd']);
    padded.extend(std::iter::repeat_n(0u8, 1000 - 4));
    std::fs::write(&file, &padded).unwrap();
    let output = run(
        vec![
            "--json".into(),
            "bench".into(),
            "--quick".into(),
            "--component".into(),
            file.display().to_string(),
        ],
        vec![],
    )
    .await;
    std::fs::remove_dir_all(dir).unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let report = json(&output);
    let figures = report["figures"].as_array().unwrap();
    let names: Vec<&str> = figures.iter().filter_map(|f| f["name"].as_str()).collect();
    for name in [
        "overhead_median_c1",
        "overhead_p99_c16",
        "wasm_throughput_c16",
        "native_throughput_c16",
        "floor_overhead_median_c1",
        "floor_throughput_ratio_c16",
        "instantiate_ratio",
        "instantiate_ratio_same_world",
        "wasm_call_without_request",
        "per_request_ratio_c1",
        "native_wakeups_per_call_c1",
        "wasm_wakeups_per_call_c1",
        "resident_per_instance",
        "linear_memory_per_instance",
        "component_size",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for figure in figures {
        let value = figure["value"].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{figure}");
        assert!(figure["unit"].is_string() && figure["target"].is_string());
    }
    let size = figures
        .iter()
        .find(|f| f["name"] == "component_size")
        .unwrap();
    assert_eq!(
        size["value"].as_f64(),
        Some(connector_host::COMPONENT.len() as f64 + 1003.0)
    );
    assert_eq!(size["target"], "<= 200000");
}

#[tokio::test]
async fn an_unusable_proxy_or_ca_file_is_a_usage_error_that_shows_no_password() {
    let sim = Simulator::start().await.unwrap();
    let token = vec![("S1_API_TOKEN", CANARY.to_owned())];
    for (proxy, why) in [
        (
            "socks5://soar:hunter2@10.0.0.8:1080",
            "only http:// proxies",
        ),
        ("http://soar:hunter2@", "expected http://host:port"),
    ] {
        let mut env = token.clone();
        env.push(("S1_PROXY", proxy.to_owned()));
        let out = run(validate_args(&sim, "canary", &[]), env).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
        assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    }
    let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let ca_file = not_pem.display().to_string();
    let out = run(
        validate_args(&sim, "canary", &["--ca-file", &ca_file]),
        token,
    )
    .await;
    std::fs::remove_file(&not_pem).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no BEGIN CERTIFICATE block"),
        "{}",
        text(&out)
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn https_proxy_and_no_proxy_are_read_as_curl_reads_them() {
    // Nothing listens on ports 1 and 2, so each request's audit line names
    // the proxy it went to, or shows the direct route's own name lookup
    // (`.invalid` never resolves).
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "validate",
            "--console",
            "s1.example.invalid",
            "--allow-domain",
            "example.invalid",
            "--timeout",
            "1",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let env = |vars: &[(&'static str, &str)]| {
        let mut env = vec![("S1_API_TOKEN", CANARY.to_owned())];
        env.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let via_1 = "the proxy 127.0.0.1:1 could not be reached";
    let direct = "error: the name";
    // (environment, extra arguments, what the output shows)
    type Case<'a> = (&'a [(&'static str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 7] = [
        (
            &[("HTTPS_PROXY", "http://soar:hunter2@127.0.0.1:1")],
            &[],
            via_1,
        ),
        // Without a scheme, as curl reads it.
        (&[("https_proxy", "127.0.0.1:1")], &[], via_1),
        // S1_PROXY is the connector's own setting, so it wins.
        (
            &[
                ("S1_PROXY", "http://127.0.0.1:2"),
                ("HTTPS_PROXY", "http://127.0.0.1:1"),
            ],
            &[],
            "the proxy 127.0.0.1:2 could not be reached",
        ),
        (
            &[
                ("HTTPS_PROXY", "http://127.0.0.1:1"),
                (
                    "NO_PROXY",
                    "localhost, 10.0.0.0/8,[::1],under_score,.example.invalid",
                ),
            ],
            &[],
            direct,
        ),
        (
            &[("HTTPS_PROXY", "http://127.0.0.1:1"), ("no_proxy", "*")],
            &[],
            direct,
        ),
        (
            &[
                ("HTTPS_PROXY", "http://127.0.0.1:1"),
                ("NO_PROXY", "other.example"),
            ],
            &[],
            via_1,
        ),
        (
            &[("HTTPS_PROXY", "http://127.0.0.1:1"), ("NO_PROXY", "*")],
            &["--no-proxy", "s1.example.invalid:443"],
            direct,
        ),
    ];
    for (vars, extra, expected) in cases {
        let out = run(args(extra), env(vars)).await;
        let text = text(&out);
        assert_eq!(out.status.code(), Some(1), "{vars:?}: {text}");
        assert!(text.contains(expected), "{vars:?} {extra:?}: {text}");
        if expected == direct {
            assert!(!text.contains("the proxy 127.0.0.1"), "{vars:?}: {text}");
        }
        assert!(
            !text.contains("hunter2") && !text.contains(CANARY),
            "{text}"
        );
    }

    // A proxy variable or list that cannot be used stops before any request.
    for (vars, extra, why) in [
        (
            &[("HTTPS_PROXY", "https://soar:hunter2@10.0.0.8:3128")][..],
            &[][..],
            "HTTPS_PROXY: the proxy address is unusable: only http:// proxies",
        ),
        (
            &[("HTTPS_PROXY", "http://127.0.0.1:1")][..],
            &["--no-proxy", "localhost,s1 example.invalid"][..],
            "--no-proxy: \"s1 example.invalid\" is not a domain name",
        ),
    ] {
        let out = run(args(extra), env(vars)).await;
        let text = text(&out);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {text}");
        assert!(text.contains(why), "{vars:?}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test]
async fn a_computer_name_cannot_drive_the_terminal_or_pass_for_another_host() {
    // An endpoint names itself: this one's name holds a terminal escape
    // (retitle the window, clear the screen), a line break that would start
    // a line of its own, and a right-to-left override.
    let name = "EVIL\u{1b}]0;pwned\u{7}\u{1b}[2J\nFIN-LT-0042\u{202e}";
    let sim = Simulator::start().await.unwrap();
    sim.add_token(CANARY, TokenProfile::admin("admin"));
    sim.add_agent("1999000000000000777", name);
    let token = vec![("S1_API_TOKEN", CANARY.to_owned())];
    for cmd in ["get-host", "isolate"] {
        let mut args = validate_args(&sim, "canary", &["--agent-id", "1999000000000000777"]);
        args[0] = cmd.to_owned();
        let out = run(args, token.clone()).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd}: {}", text(&out));
        for hidden in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(!stdout.contains(hidden), "{cmd}: {hidden:?} in {stdout:?}");
        }
        assert!(
            stdout.contains(r"EVIL\u{1b}]0;pwned\u{7}\u{1b}[2J\u{a}FIN-LT-0042\u{202e}"),
            "{cmd}: {stdout}"
        );
        // No line of the output starts with the name it imitates.
        assert!(
            !stdout
                .lines()
                .any(|l| l.trim_start().starts_with("FIN-LT-0042")),
            "{cmd}: {stdout}"
        );
    }
    // JSON keeps the name exactly, escaped as JSON does.
    let mut args = validate_args(&sim, "canary", &["--agent-id", "1999000000000000777"]);
    args[0] = "get-host".into();
    args.push("--json".into());
    let out = run(args, token).await;
    assert_eq!(json(&out)["result"]["hostname"], name, "{}", text(&out));
}
