//! `polyepo serve` over real HTTP: the OpenAI protocol, batching of concurrent requests, and
//! 4xx answers (never a crash) for bad requests.

#[path = "../../engine/tests/common/mod.rs"]
mod engine_common;

use candle_core::{DType, Device};
use polyepo::app::serve::{ServeLimits, Server};
use polyepo_engine::model::load_model;
use serde_json::{Value, json};

fn server() -> (Server, String) {
    server_with(ServeLimits {
        max_new_tokens: 64,
        max_body_bytes: 4096,
        ..ServeLimits::default()
    })
}

fn server_with(limits: ServeLimits) -> (Server, String) {
    let path = engine_common::smollm2_path();
    let loaded = load_model(&path, DType::F32, &Device::Cpu).unwrap();
    let s = Server::start(
        loaded.model,
        loaded.tokenizer,
        "smollm2".into(),
        "127.0.0.1:0",
        limits,
        4,
    )
    .unwrap();
    let base = format!("http://{}/v1", s.addr);
    (s, base)
}

fn post(url: &str, body: &str) -> (u16, Value) {
    match ureq::post(url)
        .set("Content-Type", "application/json")
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn speaks_the_openai_protocol_and_batches_concurrent_requests() {
    let (server, base) = server();
    let models: Value = ureq::get(&format!("{base}/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "smollm2");

    let (code, chat) = post(&format!("{base}/chat/completions"), &json!({"messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 20, "temperature": 0}).to_string());
    assert_eq!(code, 200);
    assert_eq!(chat["object"], "chat.completion");
    assert!(
        chat["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains('5'),
        "{chat}"
    );
    assert!(chat["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let (code, completion) = post(&format!("{base}/completions"), &json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "n": 2, "stop": "\n"}).to_string());
    assert_eq!(code, 200);
    assert_eq!(completion["choices"].as_array().unwrap().len(), 2);
    assert_eq!(
        completion["choices"][0]["text"], completion["choices"][1]["text"],
        "greedy samples agree"
    );

    // Eight clients at once: all answered, with the same greedy answer.
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let url = format!("{base}/chat/completions");
                s.spawn(move || {
                    let (code, v) = post(&url, &json!({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}).to_string());
                    assert_eq!(code, 200);
                    v["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    server.shutdown();
}

#[test]
fn bad_requests_get_4xx_with_a_reason() {
    let (server, base) = server();
    let chat = format!("{base}/chat/completions");
    let cases = [
        ("not json", 400, "invalid chat request"),
        (r#"{"messages": []}"#, 400, "messages"),
        (r#"{"messages": [{"role": "user"}]}"#, 400, "content"),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}"#,
            400,
            "max_tokens",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "n": 0}"#,
            400,
            "`n`",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}"#,
            400,
            "temperature",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "stop": 5}"#,
            400,
            "stop",
        ),
    ];
    for (body, code, reason) in cases {
        let (got, v) = post(&chat, body);
        assert_eq!(got, code, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(reason),
            "{body}: {v}"
        );
    }
    let big = json!({"messages": [{"role": "user", "content": "x".repeat(10_000)}]}).to_string();
    assert_eq!(post(&chat, &big).0, 413);
    assert_eq!(post(&format!("{base}/nope"), "{}").0, 404);
    let err = ureq::delete(&format!("{base}/models")).call().unwrap_err();
    assert!(matches!(err, ureq::Error::Status(405, _)));
    // Still serving after all of that.
    assert_eq!(
        post(
            &chat,
            r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#
        )
        .0,
        200
    );
    server.shutdown();
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_before_any_allocation() {
    // ~60k tokens (a 360 KB body, within the default 1 MiB limit) used to allocate a
    // (60k × 60k) attention mask and get the server killed.
    let (server, base) = server_with(ServeLimits::default());
    let prompt = "hello ".repeat(60_000);
    let (code, reply) = post(
        &format!("{base}/completions"),
        &json!({"prompt": prompt, "max_tokens": 4}).to_string(),
    );
    assert_eq!(code, 400, "{reply}");
    assert!(reply.to_string().contains("context"), "{reply}");
    // The server is still there for the next client.
    let (code, _) = post(
        &format!("{base}/completions"),
        &json!({"prompt": "2+3=", "max_tokens": 2, "temperature": 0}).to_string(),
    );
    assert_eq!(code, 200);
    drop(server);
}

/// The `data:` payloads of a server-sent-events body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn streaming_sends_the_same_text_as_a_whole_reply() {
    let (server, base) = server();
    for (path, request) in [
        (
            "completions",
            json!({"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}),
        ),
        (
            "chat/completions",
            json!({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0}),
        ),
    ] {
        let (code, whole) = post(&format!("{base}/{path}"), &request.to_string());
        assert_eq!(code, 200, "{whole}");
        let mut streaming = request.clone();
        streaming["stream"] = json!(true);
        streaming["stream_options"] = json!({"include_usage": true});
        let body = ureq::post(&format!("{base}/{path}"))
            .set("Content-Type", "application/json")
            .send_string(&streaming.to_string())
            .unwrap()
            .into_string()
            .unwrap();
        let data = sse_data(&body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
        let mut chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        // Asked for: a last chunk with no choices and the usage of the whole reply.
        let usage = chunks.pop().unwrap();
        assert_eq!(usage["choices"], json!([]), "{body}");
        assert_eq!(usage["usage"], whole["usage"], "{body}");
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == usage["id"] && c["usage"].is_null())
        );
        if path.starts_with("chat") {
            assert_eq!(
                chunks[0]["choices"][0]["delta"]["role"], "assistant",
                "{body}"
            );
        }
        let text: String = chunks
            .iter()
            .map(|c| {
                let choice = &c["choices"][0];
                choice["text"]
                    .as_str()
                    .or(choice["delta"]["content"].as_str())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        let expected = whole["choices"][0]["text"]
            .as_str()
            .or(whole["choices"][0]["message"]["content"].as_str())
            .unwrap();
        assert_eq!(text, expected, "{path}: {body}");
        assert!(
            chunks.len() >= 2,
            "{path}: the text came in one piece: {body}"
        );
        let finish = &chunks.last().unwrap()["choices"][0]["finish_reason"];
        assert_eq!(finish, &whole["choices"][0]["finish_reason"], "{body}");
    }
    drop(server);
}

#[test]
fn a_short_request_is_not_held_behind_a_long_one() {
    let (server, base) = server_with(ServeLimits::default());
    let start = std::time::Instant::now();
    let long_url = format!("{base}/completions");
    // Temperature 2 makes near-uniform tokens: the long request runs to its max_tokens.
    let long = std::thread::spawn(move || {
        let (code, reply) = post(
            &long_url,
            &json!({"prompt": "Once upon a time", "max_tokens": 120, "n": 4, "temperature": 2.0, "seed": 1}).to_string(),
        );
        (code, reply, start.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, _) = post(
        &format!("{base}/completions"),
        &json!({"prompt": "2+3=", "max_tokens": 4, "temperature": 0}).to_string(),
    );
    let short_done = start.elapsed();
    assert_eq!(code, 200);
    let (code, reply, long_done) = long.join().unwrap();
    assert_eq!(code, 200, "{reply}");
    // The comparison only means something if the long request really was long.
    assert!(
        reply["usage"]["completion_tokens"].as_u64().unwrap() >= 300,
        "{reply}"
    );
    assert!(
        short_done < long_done,
        "the short request finished at {short_done:?}, after the long one ({long_done:?})"
    );
    drop(server);
}

#[test]
fn a_client_that_leaves_stops_its_rows() {
    use std::io::{BufRead, BufReader, Write};
    let (server, _base) = server_with(ServeLimits::default());
    let addr = server.addr.to_string();
    for stream in [true, false] {
        let body = json!({"prompt": "Once upon a time", "max_tokens": 800, "n": 2, "temperature": 2.0, "stream": stream}).to_string();
        let mut socket = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            socket,
            "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Wait for the first sign of the reply: a data chunk when streaming, the status line
        // of the heartbeat reply otherwise.
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut line = String::new();
        let first_sign = if stream { "data: " } else { "HTTP/1.1 200" };
        while !line.starts_with(first_sign) {
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
        // The worker publishes its rows after its first step, which may come a little later.
        let started = std::time::Instant::now();
        while server.busy_rows() == 0 {
            assert!(
                started.elapsed().as_secs() < 10,
                "stream {stream}: nothing running"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The client leaves; 800 tokens would take far longer than the bound below.
        drop(reader);
        socket.shutdown(std::net::Shutdown::Both).unwrap();
        drop(socket);
        let left = std::time::Instant::now();
        while server.busy_rows() > 0 {
            assert!(
                left.elapsed().as_secs() < 10,
                "stream {stream}: rows still running 10 s after the client left"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    drop(server);
}

#[test]
fn idle_and_slow_connections_are_closed_and_connections_are_capped() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let (server, base) = server_with(ServeLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(1),
        ..ServeLimits::default()
    });
    let addr = server.addr.to_string();
    let closed_within = |mut socket: std::net::TcpStream, limit: Duration| {
        socket.set_read_timeout(Some(limit)).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 256];
        // EOF (or a reset) means the server closed it; a timeout means it did not.
        matches!(socket.read(&mut buf), Ok(0) | Err(_) if start.elapsed() < limit)
    };
    // An idle connection and one that sends half a request head both hold a slot...
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a third is refused at once with a 503.
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    let _ = third.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    // Both are closed after the idle timeout (1 s), and the slots free up.
    assert!(closed_within(idle, Duration::from_secs(5)));
    assert!(closed_within(slow, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    let models: Value = ureq::get(&format!("{base}/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "smollm2");
    drop(server);
}

#[test]
fn openai_fields_clients_send_are_honoured() {
    let (server, base) = server();
    let chat = format!("{base}/chat/completions");
    // An unknown model is a 404 with OpenAI's code; an unknown role a 400 naming the field.
    let (code, v) = post(
        &chat,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    let (code, v) = post(
        &chat,
        &json!({"messages": [{"role": "wizard", "content": "hi"}]}).to_string(),
    );
    assert_eq!(
        (code, v["error"]["param"].as_str()),
        (400, Some("messages[0].role")),
        "{v}"
    );
    assert!(v["error"].get("code").is_some(), "{v}");

    // Content as a list of text parts reads as the same text; max_completion_tokens caps the
    // reply; an empty stop string stops nothing; the ids of two replies differ.
    let ask = |content: Value| {
        post(&chat, &json!({"messages": [{"role": "user", "content": content}], "max_completion_tokens": 5, "temperature": 0, "stop": ""}).to_string())
    };
    let (code, a) = ask(json!("What is 2+3?"));
    assert_eq!(code, 200, "{a}");
    let (_, b) =
        ask(json!([{"type": "text", "text": "What is "}, {"type": "text", "text": "2+3?"}]));
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
    assert_eq!(a["usage"]["completion_tokens"], 5, "{a}");
    assert!(
        !a["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_ne!(a["id"], b["id"]);
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));

    // Log-probs: one entry per generated token, the chosen token's log-prob among the
    // alternatives, alternatives in descending order.
    let (_, v) = post(&chat, &json!({"messages": [{"role": "user", "content": "Count: 1, 2,"}], "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3}).to_string());
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
            - u64::from(v["choices"][0]["finish_reason"] == "stop")
    );
    let text: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
    for e in content {
        let top: Vec<f64> = e["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["logprob"].as_f64().unwrap())
            .collect();
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0] >= w[1]), "{top:?}");
        // Greedy: the chosen token is the most likely one.
        assert!(
            (e["logprob"].as_f64().unwrap() - top[0]).abs() < 1e-6,
            "{e}"
        );
    }

    // Completions take a list of prompts (choices prompt-major) and report logprobs.
    let (code, v) = post(&format!("{base}/completions"), &json!({"prompt": ["1, 2, 3,", "a, b, c,"], "max_tokens": 3, "temperature": 0, "n": 2, "logprobs": 1}).to_string());
    assert_eq!(code, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    assert_eq!(choices[0]["text"], choices[1]["text"]);
    assert_ne!(choices[0]["text"], choices[2]["text"]);
    assert_eq!(
        choices[0]["logprobs"]["tokens"].as_array().unwrap().len(),
        3
    );
    assert_eq!(choices[0]["logprobs"]["text_offset"][0], 0);
    server.shutdown();
}

#[test]
fn response_format_constrains_the_reply_to_the_schema() {
    let (server, base) = server();
    let chat = format!("{base}/chat/completions");
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "why": {"type": "string", "maxLength": 20}},
        "required": ["answer", "why"],
        "additionalProperties": false,
    });
    // Unconstrained, SmolLM2 answers in prose; constrained, the reply parses and fits.
    let body = |format: Value| {
        json!({"messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 60, "temperature": 0, "response_format": format}).to_string()
    };
    let (_, free) = post(&chat, &body(Value::Null));
    let free = free["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(serde_json::from_str::<Value>(&free).is_err(), "{free}");
    let (code, v) = post(
        &chat,
        &body(json!({"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})),
    );
    assert_eq!(code, 200, "{v}");
    let reply: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(reply["answer"].is_i64(), "{reply}");
    assert!(
        reply["why"].as_str().unwrap().chars().count() <= 20,
        "{reply}"
    );
    assert_eq!(reply.as_object().unwrap().len(), 2);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let (code, v) = post(&chat, &body(json!({"type": "json_object"})));
    assert_eq!(code, 200, "{v}");
    let reply: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap_or(""))
            .unwrap_or(Value::Null);
    // json_object: an object, or a prefix of one cut by max_tokens.
    assert!(
        reply.is_object() || v["choices"][0]["finish_reason"] == "length",
        "{v}"
    );
    // A bad format is a 400 naming the field.
    let (code, v) = post(&chat, &body(json!({"type": "yaml"})));
    assert_eq!(
        (code, v["error"]["param"].as_str()),
        (400, Some("response_format")),
        "{v}"
    );
    server.shutdown();
}
