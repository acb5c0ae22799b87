//! Requests per second for volume list/show and image list/show, with the
//! server on one core (a current_thread runtime on its own thread) and the
//! client on another; then, on a second emulator holding 10,000 volumes and
//! 10,000 images in one tenant, how long a page of 1000 and a walk through
//! every page take.
//!
//! `cargo run -p cloudvol-emulator --release --example bench`
//!
//! Bounded: a fixed number of requests per measurement, loopback only.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cloudvol_emulator::Config;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

const DEMO: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";
const VOLUMES: usize = 50;
const IMAGES: usize = 25;
const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 16;
/// Volumes and images of the scale measurements.
const MANY: usize = 10_000;
const PAGE: usize = 1000;
/// Repetitions of each scale measurement (the median is printed).
const ROUNDS: usize = 7;

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
            let emu =
                cloudvol_emulator::start(config.clone(), "127.0.0.1:0".parse().expect("addr"))
                    .await
                    .expect("emulator starts");
            let many = cloudvol_emulator::start(config, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("emulator starts");
            tx.send((emu.base_url(), many.base_url()))
                .expect("send base urls");
            std::future::pending::<()>().await;
        });
    });
    let (base, many) = rx.recv().expect("base urls");

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt.block_on(async {
        // See emulator/tests/http/common.rs: in the workspace build reqwest needs a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client");
        run(&http, base).await;
        at_scale(&http, many).await;
    });
}

async fn login(http: &reqwest::Client, base: &str) -> String {
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
    token["access"]["token"]["id"]
        .as_str()
        .expect("token id")
        .to_string()
}

async fn run(http: &reqwest::Client, base: String) {
    let token = login(http, &base).await;
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
        let rps = measure(http, &token, &url).await;
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

/// 10,000 volumes and 10,000 images in the demo tenant: one page of 1000
/// (latency of a single request) and a walk through every page by `next`
/// link, each measured `ROUNDS` times, the median printed.
async fn at_scale(http: &reqwest::Client, base: String) {
    let token = login(http, &base).await;
    let volumes = format!("{base}/block-storage/v2/{DEMO}/volumes");
    let images = format!("{base}/image/v2/images");
    let started = Instant::now();
    fill(http, &token, &volumes, |i| {
        json!({"volume": {"size": 1 + i % 7, "name": format!("many-{:05}", (i * 7919) % MANY),
            "metadata": {"batch": format!("{}", i % 10)}}})
    })
    .await;
    fill(
        http,
        &token,
        &images,
        |i| json!({"name": format!("many-{:05}", (i * 7919) % MANY), "os_type": "linux"}),
    )
    .await;
    println!(
        "\n{MANY} volumes and {MANY} images created in {:.1} s; each figure is the median of {ROUNDS} rounds",
        started.elapsed().as_secs_f64()
    );
    let cases = [
        (
            format!("volume detail, 1 page of {PAGE}"),
            format!("{volumes}/detail?limit={PAGE}"),
            false,
        ),
        (
            format!("volume detail, all pages of {PAGE}"),
            format!("{volumes}/detail?limit={PAGE}"),
            true,
        ),
        (
            "volume detail sort=name:asc, all pages".to_string(),
            format!("{volumes}/detail?limit={PAGE}&sort=name:asc"),
            true,
        ),
        (
            format!("volume summary, all pages of {PAGE}"),
            format!("{volumes}?limit={PAGE}"),
            true,
        ),
        (
            format!("image list, 1 page of {PAGE}"),
            format!("{images}?limit={PAGE}"),
            false,
        ),
        (
            format!("image list, all pages of {PAGE}"),
            format!("{images}?limit={PAGE}"),
            true,
        ),
        (
            "image list sort_key=name, all pages".to_string(),
            format!("{images}?limit={PAGE}&sort_key=name&sort_dir=asc"),
            true,
        ),
    ];
    for (name, url, all_pages) in cases {
        let mut times = Vec::new();
        let mut pages = 0;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            pages = walk(http, &token, &base, &url, all_pages).await;
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[ROUNDS / 2];
        println!(
            "{name:<40} {:>8.1} ms  ({pages} page{}, {:.1} ms per page)",
            median.as_secs_f64() * 1e3,
            if pages == 1 { "" } else { "s" },
            median.as_secs_f64() * 1e3 / pages as f64
        );
    }
}

/// Creates `MANY` resources by POSTing `body(i)` to `url`, `CONCURRENCY` at a time.
async fn fill(http: &reqwest::Client, token: &str, url: &str, body: impl Fn(usize) -> Value) {
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let bodies: Vec<Value> = (w..MANY).step_by(CONCURRENCY).map(&body).collect();
        let (http, url, token) = (http.clone(), url.to_string(), token.to_string());
        workers.push(tokio::spawn(async move {
            for b in bodies {
                let resp = http
                    .post(&url)
                    .header("X-Auth-Token", &token)
                    .json(&b)
                    .send()
                    .await
                    .expect("create");
                assert!(resp.status().is_success(), "{}", resp.status());
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
}

/// A list answer of either API, items left unparsed.
#[derive(Deserialize)]
struct Page {
    volumes: Option<Vec<IgnoredAny>>,
    images: Option<Vec<IgnoredAny>>,
    volumes_links: Option<Vec<Href>>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

/// GETs `url`, then (if `all_pages`) every `next` page; returns the number of
/// pages and checks that a full walk saw `MANY` items.
async fn walk(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    url: &str,
    all_pages: bool,
) -> usize {
    let mut next = Some(url.to_string());
    let (mut pages, mut items) = (0, 0);
    while let Some(url) = next.take() {
        // Only what the walk needs: the items are counted, not built.
        let page: Page = http
            .get(&url)
            .header("X-Auth-Token", token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        pages += 1;
        items += page.volumes.or(page.images).map_or(0, |v| v.len());
        let link = match page.volumes_links {
            Some(links) => links.into_iter().next().map(|l| l.href),
            None => page.next.map(|n| format!("{base}/image{n}")),
        };
        if all_pages {
            next = link;
        }
    }
    if all_pages {
        assert_eq!(items, MANY, "a walk through every page of {url}");
    }
    pages
}
