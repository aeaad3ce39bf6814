//! `polyepo advantages` end to end: the real binary, real pipes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .arg("advantages")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn replies(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn computes_every_objective_in_order() {
    let input = [
        r#"{"objective":"polychromatic","rewards":[1,1,1,0],"clusters":[0,0,1,100],"set_size":2}"#,
        r#"{"objective":"mean","rewards":[1,0,0,1],"set_size":2,"estimator":"enumerate"}"#,
        r#"{"objective":"max","rewards":[1,0,0,1],"set_size":2,"estimator":"sampled","sets":4,"seed":3}"#,
        r#"{"objective":"grpo","rewards":[1,0,0,0]}"#,
        "",
        r#"{"objective":"drgrpo","rewards":[2,0,1]}"#,
        r#"{"objective":"diversity-bonus","rewards":[1,1,0],"clusters":[0,null,1],"lambda":0.5}"#,
    ]
    .join("\n");
    let out = run(&["--degenerate-id", "100"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = replies(&out);
    assert_eq!(replies.len(), 6, "one reply per non-empty line");
    // Polychromatic with id 100 degenerate: hand-checked against enumeration (setrl tests).
    let poly: Vec<f64> = serde_json::from_value(replies[0]["advantages"].clone()).unwrap();
    assert!(
        (poly[2] - 5.0 / 24.0).abs() < 1e-12 && (poly[3] + 7.0 / 24.0).abs() < 1e-12,
        "{poly:?}"
    );
    // Mean objective, N=4, n=2: scale (N-n)/(n(N-1)) = 1/3 of r - r̄.
    assert_eq!(replies[1]["baseline"], 0.5);
    let mean: Vec<f64> = serde_json::from_value(replies[1]["advantages"].clone()).unwrap();
    assert!((mean[0] - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(
        replies[4]["advantages"],
        serde_json::json!([1.0, -1.0, 0.0])
    );
    // Diversity bonus: div = [1/2, 0, 1/2] (the degenerate one gets none), scores
    // [1.25, 1, 0.25], mean 2.5/3.
    let bonus: Vec<f64> = serde_json::from_value(replies[5]["advantages"].clone()).unwrap();
    for (a, s) in bonus.iter().zip([1.25, 1.0, 0.25]) {
        assert!((a - (s - 2.5 / 3.0)).abs() < 1e-12, "{bonus:?}");
    }
}

#[test]
fn degenerate_id_changes_the_answer() {
    let line =
        r#"{"objective":"polychromatic","rewards":[1,1,0],"clusters":[0,100,1],"set_size":2}"#;
    let with = replies(&run(&["--degenerate-id", "100"], line));
    let without = replies(&run(&[], line));
    assert_ne!(with[0]["advantages"], without[0]["advantages"]);
}

#[test]
fn malformed_line_stops_with_status_2_naming_line_and_field() {
    let cases = [
        (
            r#"{"objective":"mean","rewards":[1,"x"],"set_size":1}"#,
            "rewards[1]",
        ),
        (
            r#"{"objective":"polychromatic","rewards":[1,0],"set_size":1}"#,
            "clusters",
        ),
        (
            r#"{"objective":"mean","rewards":[1,0],"set_size":3}"#,
            "set_size",
        ),
        (r#"{"objective":"mean","rewards":[1,0]}"#, "set_size"),
        (r#"{"objective":"nope","rewards":[1,0]}"#, "objective"),
        (
            r#"{"objective":"mean","rewards":[1,0],"set_sise":1}"#,
            "set_sise",
        ),
        (
            r#"{"objective":"mean","rewards":[],"set_size":1}"#,
            "rewards",
        ),
        (
            r#"{"objective":"diversity-bonus","rewards":[1,0],"clusters":[1,2]}"#,
            "lambda",
        ),
        (
            r#"{"objective":"max","rewards":[1,0],"set_size":1,"estimator":"sampled","sets":0}"#,
            "sets",
        ),
        (r#"{"objective":"mean","rewards":[1,0"#, "rewards"),
        (r#"not json"#, "(line)"),
    ];
    let good = r#"{"objective":"drgrpo","rewards":[1,0]}"#;
    for (bad, field) in cases {
        let input = format!("{good}\n{good}\n{bad}\n{good}\n");
        let out = run(&[], &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(
            replies(&out).len(),
            2,
            "{bad}: lines before are answered, none after"
        );
        assert!(stderr.contains("<stdin>:3:"), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("`{field}`")),
            "{bad}: expected field {field} in {stderr}"
        );
    }
}

#[test]
fn reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("polyepo-adv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("groups.jsonl");
    std::fs::write(
        &path,
        "{\"objective\":\"grpo\",\"rewards\":[1,0]}\n{\"objective\":\"grpo\"}\n",
    )
    .unwrap();
    let out = run(&[path.to_str().unwrap()], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("groups.jsonl:2:") && stderr.contains("rewards"),
        "{stderr}"
    );
    let missing = run(&[dir.join("missing.jsonl").to_str().unwrap()], "");
    assert_eq!(missing.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}
