//! The protocol core against a live server, natively: how long a session takes to
//! open (Hello to ActivateSession), and Read and Write round trips of the twelve typed
//! nodes of `tests/peers/opcua_peer.py`. For BENCHMARKS.md and for poking at a server:
//!
//! ```sh
//! $OCTOPUS_PEERS_PYTHON tests/peers/opcua_peer.py serve 14840 &
//! cd adaptors-wasm && cargo run --release --example live -p adaptor-opcua \
//!     --features fuzz --target x86_64-unknown-linux-gnu -- opc.tcp://127.0.0.1:14840/octopus/
//! ```
//!
//! Traffic goes only to the URL given, which must be on 127.0.0.1; every loop is
//! bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a tool"
)]

#[path = "common/tcp.rs"]
mod tcp;
use tcp::Tcp;

use std::net::TcpStream;
use std::str::FromStr;
use std::time::Instant;

use adaptor_opcua::fuzz::session::Session;
use adaptor_opcua::fuzz::spec::Identity;
use opcua_types::{NodeId, Variant};

fn open(url: &str) -> Session<Tcp> {
    let authority = url
        .trim_start_matches("opc.tcp://")
        .split('/')
        .next()
        .unwrap();
    assert!(authority.starts_with("127.0.0.1:"), "loopback only: {url}");
    let stream = TcpStream::connect(authority).unwrap();
    stream.set_nodelay(true).unwrap();
    Session::open(
        Tcp(stream, Instant::now()),
        url,
        &Identity::Anonymous,
        5_000,
        u64::MAX,
    )
    .unwrap()
}

/// Median, p10 and p90 of `f` over `runs`, in microseconds.
fn measure(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn main() {
    let url = std::env::args()
        .nth(1)
        .expect("usage: live opc.tcp://127.0.0.1:PORT/path");
    let names = [
        "Float",
        "Double",
        "Int64",
        "Int32",
        "Int16",
        "UInt64",
        "UInt32",
        "UInt16",
        "String",
        "Boolean",
        "ByteString",
        "DateTime",
    ];
    let nodes: Vec<NodeId> = names
        .iter()
        .map(|n| NodeId::from_str(&format!("ns=2;s={n}")).unwrap())
        .collect();
    let row = |what: &str, runs: usize, (median, p10, p90): (f64, f64, f64)| {
        println!(
            "| {what} | {:.2} ms | {:.2} .. {:.2} | {runs} |",
            median / 1e3,
            p10 / 1e3,
            p90 / 1e3
        );
    };
    row(
        "open a session (Hello to ActivateSession), then close it",
        20,
        measure(20, || open(&url).close()),
    );
    let mut session = open(&url);
    row(
        "Read, 12 typed nodes",
        200,
        measure(200, || {
            let values = session.read(&nodes).unwrap();
            assert!(values.iter().all(|v| v.status().is_good()));
        }),
    );
    let mut i = 0i32;
    row(
        "Write, one Int32",
        200,
        measure(200, || {
            i += 1;
            let statuses = session
                .write(&[(nodes[3].clone(), Variant::Int32(i))])
                .unwrap();
            assert!(statuses[0].is_good());
        }),
    );
    session.close();
}
