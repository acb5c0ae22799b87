//! Requests per second for volume list/show and image list/show, with the
//! server on one core (a current_thread runtime on its own thread) and the
//! client on another.
//!
//! `cargo run -p cloudvol-emulator --release --example bench`
//!
//! Bounded: a fixed number of requests per measurement, loopback only.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cloudvol_emulator::Config;
use serde_json::{Value, json};

const DEMO: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";
const VOLUMES: usize = 50;
const IMAGES: usize = 25;
const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 16;

fn main() {
    // The server: one thread, one current_thread runtime.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let config = Config::demo().with_transitions(Duration::ZERO);
            let emu = cloudvol_emulator::start(config, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("emulator starts");
            tx.send(emu.base_url()).expect("send base url");
            std::future::pending::<()>().await;
        });
    });
    let base = rx.recv().expect("base url");

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt.block_on(run(base));
}

async fn run(base: String) {
    // See emulator/tests/http/common.rs: in the workspace build reqwest needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let token: Value = http
        .post(format!("{base}/identity/v2.0/tokens"))
        .json(&json!({"auth": {"tenantId": DEMO, "passwordCredentials": {
            "username": "demo", "password": "demo-password"}}}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = token["access"]["token"]["id"]
        .as_str()
        .expect("token id")
        .to_string();
    let volumes = format!("{base}/block-storage/v2/{DEMO}/volumes");
    let mut volume_id = String::new();
    for i in 0..VOLUMES {
        let v: Value = http
            .post(&volumes)
            .header("X-Auth-Token", &token)
            .json(&json!({"volume": {"size": 1, "name": format!("bench-{i}")}}))
            .send()
            .await
            .expect("create volume")
            .json()
            .await
            .expect("volume json");
        volume_id = v["volume"]["id"].as_str().unwrap_or_default().to_string();
    }
    let mut image_id = String::new();
    for i in 0..IMAGES {
        let v: Value = http
            .post(format!("{base}/image/v2/images"))
            .header("X-Auth-Token", &token)
            .json(&json!({"name": format!("bench-{i}"), "os_type": "linux"}))
            .send()
            .await
            .expect("create image")
            .json()
            .await
            .expect("image json");
        image_id = v["id"].as_str().unwrap_or_default().to_string();
    }

    println!(
        "cloudvol-emulator bench: server on 1 core (current_thread), {REQUESTS} requests each, {CONCURRENCY} concurrent, keep-alive"
    );
    let cases = [
        (
            format!("volume list (detail, {VOLUMES} volumes)"),
            format!("{volumes}/detail"),
        ),
        (
            "volume list (limit=10)".to_string(),
            format!("{volumes}?limit=10"),
        ),
        ("volume show".to_string(), format!("{volumes}/{volume_id}")),
        (
            format!("image list ({IMAGES} images)"),
            format!("{base}/image/v2/images"),
        ),
        (
            "image show".to_string(),
            format!("{base}/image/v2/images/{image_id}"),
        ),
    ];
    for (name, url) in cases {
        let rps = measure(&http, &token, &url).await;
        println!("{name:<34} {rps:>9.0} requests/s");
    }
}

async fn measure(http: &reqwest::Client, token: &str, url: &str) -> f64 {
    // Warm up the connection pool.
    for _ in 0..CONCURRENCY {
        let _ = http.get(url).header("X-Auth-Token", token).send().await;
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let http = http.clone();
        let url = url.to_string();
        let token = token.to_string();
        workers.push(tokio::spawn(async move {
            for _ in 0..REQUESTS / CONCURRENCY {
                let resp = http
                    .get(&url)
                    .header("X-Auth-Token", &token)
                    .send()
                    .await
                    .expect("request");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await.expect("body");
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    (REQUESTS / CONCURRENCY * CONCURRENCY) as f64 / start.elapsed().as_secs_f64()
}
