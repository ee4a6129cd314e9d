//! `standby bench`: the latency proxy in front of the secondary, and the command's JSON output.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use standby::bench::proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP echo server on 127.0.0.1 that writes back what it reads, then closes after the client
/// closes its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_proxy_forwards_bytes_both_ways_unchanged() {
    let echo = echo_server().await;
    for latency in [Duration::ZERO, Duration::from_millis(5)] {
        let proxy = Proxy::start(echo, latency).await.unwrap();
        let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (mut read, mut write) = socket.split();
        let send = async {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let mut received = Vec::new();
        let receive = async {
            read.read_to_end(&mut received).await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(send, receive)
        })
        .await
        .expect("the echo through the proxy completes");
        assert_eq!(received.len(), sent.len(), "latency {latency:?}");
        assert!(received == sent, "the bytes changed (latency {latency:?})");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn the_proxy_adds_its_latency_each_way() {
    let echo = echo_server().await;
    let latency = Duration::from_millis(30);
    let proxy = Proxy::start(echo, latency).await.unwrap();
    let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let mut buf = [0u8; 4];
    for round in 0..3u8 {
        let started = Instant::now();
        socket.write_all(&[round; 4]).await.unwrap();
        socket.read_exact(&mut buf).await.unwrap();
        let took = started.elapsed();
        assert_eq!(buf, [round; 4]);
        assert!(
            took >= 2 * latency,
            "a round trip took {took:?}, less than twice the added {latency:?}"
        );
    }
    proxy.stop().await;
}

#[test]
fn bench_json_prints_one_object_with_exactly_the_figures_and_parameters() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args([
            "bench",
            "--events",
            "2000",
            "--streams",
            "20",
            "--rounds",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let value: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    let object = value.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec![
        "raw_read_eps",
        "raw_append_eps",
        "replicate_eps_global",
        "replicate_eps_stream",
        "live_lag_p50_ms",
        "live_lag_p99_ms",
        "peak_rss_mib",
        "cpu_seconds_per_100k",
        "events",
        "streams",
        "event_bytes",
        "latency_ms",
        "rounds",
        "nodes",
        "wire",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(object["wire"], "grpc", "gRPC is the default wire");
    for key in [
        "raw_read_eps",
        "raw_append_eps",
        "replicate_eps_global",
        "replicate_eps_stream",
        "peak_rss_mib",
        "cpu_seconds_per_100k",
    ] {
        let n = object[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is a number"));
        assert!(n > 0.0, "{key} = {n}");
    }
    for key in ["live_lag_p50_ms", "live_lag_p99_ms"] {
        let n = object[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is a number"));
        assert!(n >= 0.0, "{key} = {n}");
    }
    assert!(object["live_lag_p50_ms"].as_f64() <= object["live_lag_p99_ms"].as_f64());
    assert_eq!(object["events"], 2000);
    assert_eq!(object["streams"], 20);
    assert_eq!(object["event_bytes"], 100);
    assert_eq!(object["latency_ms"], 0);
    assert_eq!(object["rounds"], 2);
    assert_eq!(object["nodes"], "in-process");
    assert!(
        stderr.contains("in-process"),
        "the progress says where the nodes run: {stderr}"
    );
    assert!(
        stderr.contains("[2/2] replicate, ordering stream"),
        "both rounds ran: {stderr}"
    );
}
