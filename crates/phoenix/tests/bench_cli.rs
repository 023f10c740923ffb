//! `phoenix bench ingest` as a user runs it: against the real server binary, in both modes, it posts
//! exactly the events asked for with real tenant JWTs and reports events/s with zero errors; without
//! credentials it stops with one clear line.

use std::process::Output;

mod common;

use common::{SECRET, Server, phoenix};

/// Runs `phoenix bench` against a test server.
trait Bench {
    fn bench(&self, args: &[&str]) -> Output;
    fn bench_kind(&self, kind: &str, args: &[&str]) -> Output;
}

impl Bench for Server {
    fn bench(&self, args: &[&str]) -> Output {
        self.bench_kind("ingest", args)
    }

    fn bench_kind(&self, kind: &str, args: &[&str]) -> Output {
        phoenix()
            .args(["bench", kind, "--url", &self.url("")])
            .args(args)
            .env("PHOENIX_ADMIN_SECRET", SECRET)
            .output()
            .expect("run phoenix bench ingest")
    }
}

/// The value on the report line that starts with `label`.
fn report_line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in the report:\n{report}"))
        .trim()
}

fn assert_clean_run(out: &Output, events: u64) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert_eq!(report_line(&stdout, "errors"), "0", "{stdout}");
    let sent = report_line(&stdout, "events ");
    assert!(
        sent.starts_with(&format!("{events} ({events} accepted, 0 duplicates")),
        "{stdout}"
    );
    let rate: f64 = report_line(&stdout, "events/s")
        .parse()
        .unwrap_or_else(|_| panic!("events/s is not a number:\n{stdout}"));
    assert!(rate > 0.0, "{stdout}");
    assert!(report_line(&stdout, "latency").contains("p99"), "{stdout}");
    stdout
}

#[test]
fn bench_ingest_drives_a_real_server_in_both_modes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());

    let out = server.bench(&["--mode", "single", "--events", "200", "--concurrency", "4"]);
    let report = assert_clean_run(&out, 200);
    assert_eq!(report_line(&report, "mode"), "single");
    assert_eq!(report_line(&report, "concurrency"), "4");
    assert!(report.contains("stopped by the event count"), "{report}");

    let out = server.bench(&[
        "--mode",
        "batch",
        "--events",
        "2000",
        "--batch-size",
        "500",
        "--warmup",
        "0",
    ]);
    let report = assert_clean_run(&out, 2000);
    assert_eq!(report_line(&report, "batch size"), "500");
    assert!(
        report.contains("requests      4 (4 answered 202)"),
        "{report}"
    );
}

#[test]
fn bench_ingest_without_credentials_or_with_a_bad_url_stops_with_one_line() {
    let out = phoenix()
        .args([
            "bench",
            "ingest",
            "--url",
            "http://127.0.0.1:9",
            "--events",
            "1",
        ])
        .output()
        .expect("run phoenix bench ingest");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--admin-secret"), "{stderr}");

    let out = phoenix()
        .args([
            "bench",
            "ingest",
            "--url",
            "ftp://127.0.0.1",
            "--events",
            "1",
        ])
        .env("PHOENIX_ADMIN_SECRET", SECRET)
        .output()
        .expect("run phoenix bench ingest");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--url"), "{stderr}");
}

fn assert_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn bench_query_and_bench_ws_drive_a_real_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());

    let out = server.bench_kind(
        "query",
        &[
            "--players",
            "2000",
            "--ranked",
            "1500",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "4",
            "--jwt-pool",
            "20",
            "--read",
            "top,around,livez",
        ],
    );
    let report = assert_success(&out);
    assert!(report.contains("loaded        2000 players"), "{report}");
    assert!(report.contains("ranked        1500 entries"), "{report}");
    assert!(report.contains("read          top"), "{report}");
    assert!(report.contains("read          around"), "{report}");
    assert!(report.contains("read          livez"), "{report}");
    for errors in report.lines().filter_map(|l| l.strip_prefix("errors")) {
        assert_eq!(errors.trim(), "0", "{report}");
    }
    for rate in report.lines().filter_map(|l| l.strip_prefix("reads/s")) {
        let rate: f64 = rate.trim().parse().expect("reads/s is a number");
        assert!(rate > 0.0, "{report}");
    }

    let pid = server.child.id().to_string();
    let out = server.bench_kind(
        "ws",
        &[
            "--subscribers",
            "20",
            "--sample",
            "5",
            "--rate",
            "50",
            "--duration",
            "1",
            "--server-pid",
            &pid,
        ],
    );
    let report = assert_success(&out);
    assert!(report.contains("connected     20 of 20"), "{report}");
    assert!(report.contains("bytes per subscriber"), "{report}");
    assert_eq!(report_line(&report, "errors"), "0", "{report}");
    assert!(
        report.contains("pairs         250 (timed subscriber, event); 0 never shown"),
        "{report}"
    );
    assert!(report_line(&report, "latency").contains("p99"), "{report}");
}

#[test]
fn bench_send_floor_needs_no_server() {
    let out = phoenix()
        .args(["bench", "send-floor", "--sockets", "50", "--rounds", "3"])
        .output()
        .expect("run phoenix bench send-floor");
    let report = assert_success(&out);
    assert!(
        report.contains("send floor    50 sockets, 3 rounds"),
        "{report}"
    );
    assert!(
        report_line(&report, "round").contains("per write"),
        "{report}"
    );
}

/// The attack script against the real binary: stalled sockets, made-up methods and oversized bodies at
/// once, and `/livez` answers within a second throughout; the metrics do not grow with the methods.
#[test]
fn bench_attack_leaves_the_server_answering_livez() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let pid = server.child.id().to_string();
    let out = server.bench_kind(
        "attack",
        &[
            "--sockets",
            "300",
            "--duration",
            "4",
            "--methods-per-second",
            "100",
            "--server-pid",
            &pid,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let livez = report_line(&stdout, "livez");
    assert!(livez.contains(" 0 failed"), "{stdout}");
    assert!(report_line(&stdout, "memory").contains("peak"), "{stdout}");
    // Made-up methods share one label: /metrics stays small.
    let metrics = report_line(&stdout, "metrics");
    let after: usize = metrics
        .split("bytes before, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {metrics}"));
    assert!(after < 64 * 1024, "{stdout}");
}

/// `phoenix bench soak` runs the store through simulated days and reports a table and a chart.
#[test]
fn bench_soak_reports_a_table_and_writes_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("soak.svg");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args([
            "bench",
            "soak",
            "--days",
            "9",
            "--events-per-day",
            "3000",
            "--players-per-day",
            "300",
            "--players",
            "2000",
            "--report-every",
            "3",
            "--restart-every",
            "3",
            "--soak-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--chart")
        .arg(&chart)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "header and days 3, 6, 9: {stdout}");
    assert!(rows[3].starts_with("| 9 | 27000 |"), "{stdout}");
    assert!(stdout.contains("ended windows in cold storage"), "{stdout}");
    // Nine daily windows and the first week ended: they are on disk, not in memory.
    let cold = std::fs::read_dir(dir.path().join("data").join("cold"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert!(cold >= 9, "{cold} cold windows");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}
