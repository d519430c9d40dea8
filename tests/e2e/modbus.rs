//! The Modbus adaptor (`adaptors-wasm/modbus`) through the limb against a real slave
//! (pymodbus, `host/tests/peers/modbus_server.py`) over TCP on loopback and RTU over a
//! socat pty pair, cross-checked with an independent master (`mbpoll`). See `peers.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crds::{ConditionStatus, ConditionType, DeviceLink};
use limb::adaptors::Adaptor;
use limb::capabilities::{Backends, Policy};
use limb::status::{DeviceReport, Phase};
use limb::supervisor::Command as Sup;
use serde_json::{Value, json};

use crate::common::*;
use crate::peers::{Line, Mbpoll, ModbusServer, PtyPair, spray_junk};
use octopus_tests::paths::repo_file;

const POLICY: &str = r#"
tcp: ["127.0.0.0/8"]
serial: ["/dev/pts/*"]
"#;

/// Baud rate of the RTU line (a pty keeps it but does not pace by it).
const BAUD: u32 = 19200;

/// Within the harness's 500 ms call timeout.
const TIMEOUT: &str = "300ms";
const SYNC: &str = "200ms";

// ---------------------------------------------------------------------------------------
// The slave's layout, mirrored from the table in modbus_server.py (PDU addresses).

const ORDERS: [&str; 4] = [
    "BigEndian",
    "BigEndianSwap",
    "LittleEndian",
    "LittleEndianSwap",
];

const HR_INT16: (u16, &str) = (0, "-12345");
const HR_UINT16: (u16, &str) = (1, "54321");
const HR_HEX: (u16, &str) = (2, "beef");
const HR_STRING: (u16, u16, &str) = (4, 4, "OCTOPUS!");
/// 32-bit values, one per byte order from the base address, two registers each.
const HR_INT32: (u16, &str) = (10, "-123456789");
const HR_UINT32: (u16, &str) = (18, "3000000000");
const HR_FLOAT: (u16, &str) = (26, "123.456");
/// 64-bit values, one per byte order from the base address, four registers each.
const HR_INT64: (u16, &str) = (40, "-1234567890123456789");
const HR_UINT64: (u16, &str) = (56, "12345678901234567890");
const HR_DOUBLE: (u16, &str) = (72, "2.718281828459045");
/// unit * 1111: which worker answered.
const HR_WHO: u16 = 100;
const HR_ARITH_INT16: (u16, i16) = (101, -245);
const HR_ARITH_UINT16: (u16, u16) = (102, 1000);
/// float BigEndian, unit * 1.25.
const HR_UNIT_FLOAT: u16 = 103;
/// Write area (all 0 at start).
const HR_W_INT16: u16 = 200;
const HR_W_UINT32: u16 = 202;
const HR_W_FLOAT: u16 = 204;
const HR_W_UINT16: u16 = 206;
const CO_W: u16 = 60;
/// Registers and bits 0..SIZE exist; OUT_OF_RANGE raises exception 2.
const OUT_OF_RANGE: u16 = 1000;

const IR_UINT16: (u16, &str) = (0, "1234");
const IR_INT16: (u16, &str) = (1, "-1000");
const IR_FLOAT_BE: (u16, &str) = (2, "3.5");
const IR_FLOAT_LE: (u16, &str) = (4, "3.5");
const IR_INT32: (u16, &str) = (6, "-100000");
/// unit * 10.
const IR_UNIT: u16 = 10;

const COILS_UNIT1: [bool; 8] = [true, false, true, true, false, false, false, false];
const COILS_UNIT2: [bool; 8] = [false, true, false, false, true, true, true, true];
const DISCRETE: [bool; 8] = [false, true, true, false, true, false, false, true];

/// One property read through the adaptor and what it must read.
#[derive(Clone, Debug)]
struct Expect {
    name: String,
    register: &'static str,
    offset: u16,
    quantity: u16,
    ty: &'static str,
    endianness: Option<&'static str>,
    value: String,
}

fn expect(
    name: impl Into<String>,
    register: &'static str,
    offset: u16,
    quantity: u16,
    ty: &'static str,
    endianness: Option<&'static str>,
    value: impl Into<String>,
) -> Expect {
    Expect {
        name: name.into(),
        register,
        offset,
        quantity,
        ty,
        endianness,
        value: value.into(),
    }
}

const HR: &str = "HoldingRegister";
const IR: &str = "InputRegister";
const CO: &str = "CoilRegister";
const DI: &str = "DiscreteInputRegister";

/// Coils packed the Modbus way (first coil in the lowest bit), as lowercase hex.
fn packed_hex(bits: &[bool]) -> String {
    bits.chunks(8)
        .map(|byte| {
            let b = byte
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, &on)| acc | (u8::from(on) << i));
            format!("{b:02x}")
        })
        .collect()
}

/// Everything worker 1 holds that does not change, as properties.
fn layout() -> Vec<Expect> {
    let mut v = vec![
        expect("hrInt16", HR, HR_INT16.0, 1, "int16", None, HR_INT16.1),
        expect("hrUint16", HR, HR_UINT16.0, 1, "uint16", None, HR_UINT16.1),
        expect("hrHex", HR, HR_HEX.0, 1, "hexString", None, HR_HEX.1),
        expect(
            "hrString",
            HR,
            HR_STRING.0,
            HR_STRING.1,
            "string",
            None,
            HR_STRING.2,
        ),
        expect("hrHex32", HR, HR_INT32.0, 2, "hexString", None, "f8a432eb"),
        // `int` and `uint` are the 32-bit types under Octopus's names.
        expect("hrInt", HR, HR_INT32.0, 2, "int", None, HR_INT32.1),
        expect("hrUint", HR, HR_UINT32.0, 2, "uint", None, HR_UINT32.1),
        expect("hrWho", HR, HR_WHO, 1, "uint16", None, "1111"),
        expect("hrUnitFloat", HR, HR_UNIT_FLOAT, 2, "float", None, "1.25"),
        expect("irUint16", IR, IR_UINT16.0, 1, "uint16", None, IR_UINT16.1),
        expect("irInt16", IR, IR_INT16.0, 1, "int16", None, IR_INT16.1),
        expect(
            "irFloatBE",
            IR,
            IR_FLOAT_BE.0,
            2,
            "float",
            None,
            IR_FLOAT_BE.1,
        ),
        expect(
            "irFloatLE",
            IR,
            IR_FLOAT_LE.0,
            2,
            "float",
            Some("LittleEndian"),
            IR_FLOAT_LE.1,
        ),
        expect("irInt32", IR, IR_INT32.0, 2, "int32", None, IR_INT32.1),
        expect("irUnit", IR, IR_UNIT, 1, "uint16", None, "10"),
        expect(
            "coils8",
            CO,
            0,
            8,
            "hexString",
            None,
            packed_hex(&COILS_UNIT1),
        ),
        expect(
            "discrete8",
            DI,
            0,
            8,
            "hexString",
            None,
            packed_hex(&DISCRETE),
        ),
    ];
    for (i, on) in COILS_UNIT1.iter().enumerate() {
        v.push(expect(
            format!("coil{i}"),
            CO,
            i as u16,
            1,
            "boolean",
            None,
            on.to_string(),
        ));
    }
    for (i, on) in DISCRETE.iter().enumerate() {
        v.push(expect(
            format!("discrete{i}"),
            DI,
            i as u16,
            1,
            "boolean",
            None,
            on.to_string(),
        ));
    }
    let wide: [(&str, (u16, &str), u16); 6] = [
        ("int32", HR_INT32, 2),
        ("uint32", HR_UINT32, 2),
        ("float", HR_FLOAT, 2),
        ("int64", HR_INT64, 4),
        ("uint64", HR_UINT64, 4),
        ("double", HR_DOUBLE, 4),
    ];
    for (ty, (base, value), q) in wide {
        for (i, order) in ORDERS.iter().enumerate() {
            v.push(expect(
                format!("{ty}{order}"),
                HR,
                base + q * i as u16,
                q,
                ty,
                Some(order),
                value,
            ));
        }
    }
    v
}

/// The big-endian bytes of an expected value of a register type.
fn value_bytes(ty: &str, value: &str) -> Vec<u8> {
    match ty {
        "int16" => value.parse::<i16>().unwrap().to_be_bytes().to_vec(),
        "uint16" => value.parse::<u16>().unwrap().to_be_bytes().to_vec(),
        "int" | "int32" => value.parse::<i32>().unwrap().to_be_bytes().to_vec(),
        "uint" | "uint32" => value.parse::<u32>().unwrap().to_be_bytes().to_vec(),
        "float" => value.parse::<f32>().unwrap().to_be_bytes().to_vec(),
        "int64" => value.parse::<i64>().unwrap().to_be_bytes().to_vec(),
        "uint64" => value.parse::<u64>().unwrap().to_be_bytes().to_vec(),
        "double" => value.parse::<f64>().unwrap().to_be_bytes().to_vec(),
        "string" => value.as_bytes().to_vec(),
        "hexString" => (0..value.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
            .collect(),
        other => panic!("no bytes for {other}"),
    }
}

/// Bytes (most significant first) to registers on the wire in a byte order.
fn wire(bytes: &[u8], endianness: Option<&str>) -> Vec<u16> {
    let words: Vec<[u8; 2]> = bytes.chunks(2).map(|w| [w[0], w[1]]).collect();
    let words: Vec<[u8; 2]> = match endianness.unwrap_or("BigEndian") {
        "BigEndian" => words,
        "BigEndianSwap" => words.iter().map(|w| [w[1], w[0]]).collect(),
        "LittleEndian" => words.into_iter().rev().collect(),
        "LittleEndianSwap" => words.iter().rev().map(|w| [w[1], w[0]]).collect(),
        other => panic!("unknown byte order {other}"),
    };
    words.iter().map(|w| u16::from_be_bytes(*w)).collect()
}

/// What the holding registers 0..88 of worker 1 must hold, from the layout.
fn expected_holding() -> BTreeMap<u16, u16> {
    let mut regs = BTreeMap::new();
    for e in layout() {
        if e.register != HR || e.offset >= 90 {
            continue;
        }
        for (i, r) in wire(&value_bytes(e.ty, &e.value), e.endianness)
            .into_iter()
            .enumerate()
        {
            let prev = regs.insert(e.offset + i as u16, r);
            assert!(
                prev.is_none_or(|p| p == r),
                "layout overlaps at {}",
                e.offset + i as u16
            );
        }
    }
    regs
}

// ---------------------------------------------------------------------------------------
// DeviceLinks and status.

fn property(e: &Expect) -> Value {
    let mut visitor = json!({"register": e.register, "offset": e.offset, "quantity": e.quantity});
    if let Some(order) = e.endianness {
        visitor["endianness"] = order.into();
    }
    json!({"name": e.name, "type": e.ty, "readOnly": true, "visitor": visitor})
}

fn writable(
    name: &str,
    register: &str,
    offset: u16,
    quantity: u16,
    ty: &str,
    value: &str,
) -> Value {
    json!({
        "name": name, "type": ty, "readOnly": false, "value": value,
        "visitor": {"register": register, "offset": offset, "quantity": quantity},
    })
}

fn parameters() -> Value {
    json!({"syncInterval": SYNC, "timeout": TIMEOUT})
}

fn tcp_spec(endpoint: &str, worker: u8, properties: Vec<Value>) -> Value {
    json!({
        "protocol": {"tcp": {"endpoint": endpoint, "workerID": worker}},
        "parameters": parameters(),
        "properties": properties,
    })
}

fn rtu_spec(tty: &std::path::Path, worker: u8, properties: Vec<Value>) -> Value {
    json!({
        "protocol": {"rtu": {
            "endpoint": tty.display().to_string(), "workerID": worker,
            "baudRate": BAUD, "dataBits": 8, "parity": "N", "stopBits": 1,
        }},
        "parameters": parameters(),
        "properties": properties,
    })
}

fn modbus(name: &str, spec: Value) -> Arc<DeviceLink> {
    link(name, "modbus", "ModbusDevice", spec)
}

fn harness_modbus() -> Harness {
    harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |_| {},
    )
}

/// The status properties by name.
fn props(r: &DeviceReport) -> BTreeMap<String, Value> {
    r.status["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p.clone())))
                .collect()
        })
        .unwrap_or_default()
}

fn value_of(r: &DeviceReport, name: &str) -> Option<String> {
    props(r)
        .get(name)
        .and_then(|p| p["value"].as_str().map(str::to_owned))
}

/// Every named property has a value and no error.
fn all_read(r: &DeviceReport, names: &[&str]) -> bool {
    let p = props(r);
    names.iter().all(|n| {
        p.get(*n)
            .is_some_and(|p| p["value"].is_string() && p.get("error").is_none_or(Value::is_null))
    })
}

fn errors(r: &DeviceReport) -> Vec<String> {
    let mut v: Vec<String> = props(r)
        .values()
        .filter_map(|p| p["error"].as_str().map(|e| format!("{}: {e}", p["name"])))
        .collect();
    v.extend(r.last_error.clone());
    v
}

/// A message that says the slave did not answer in time.
fn is_timeout(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("timed out")
        || m.contains("timeout")
        || m.contains("no reply within")
        || m.contains("did not answer within")
}

fn connected(r: &DeviceReport) -> Option<ConditionStatus> {
    r.conditions
        .get(ConditionType::DeviceConnected)
        .map(|c| c.status)
}

/// Reads what worker 1 holds with mbpoll, in blocking threads.
async fn mb(line: Line, unit: u8) -> Mbpoll {
    tokio::task::spawn_blocking(move || Mbpoll::new(line, unit))
        .await
        .unwrap()
}

async fn mb_read(
    m: &Arc<Mbpoll>,
    table: &'static str,
    address: u16,
    count: u16,
    big_endian: bool,
) -> Vec<crate::peers::Reading> {
    let m = m.clone();
    tokio::task::spawn_blocking(move || m.read(table, address, count, big_endian))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("mbpoll read of {table} at {address}: {e}"))
}

async fn mb_write(m: &Arc<Mbpoll>, table: &'static str, address: u16, values: &[&str]) {
    let m = m.clone();
    let values: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        m.write(table, address, &v)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("mbpoll write of {table} at {address}: {e}"));
}

// ---------------------------------------------------------------------------------------
// 0. The peers themselves (no adaptor): the slave holds the documented layout, over TCP
// and RTU, for both workers, and answers as the tests below expect.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_slave_holds_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ModbusServer::tcp(dir.path());
    let m = Arc::new(mb(Line::Tcp(server.port), 1).await);
    let hex = mb_read(&m, "4:hex", 0, 88, false).await;
    for (addr, want) in expected_holding() {
        assert_eq!(
            hex[usize::from(addr)].unsigned(),
            u64::from(want),
            "holding register {addr}"
        );
    }
    assert_eq!(
        mb_read(&m, "4", HR_INT16.0, 1, false).await[0].signed(),
        -12345
    );
    assert_eq!(
        mb_read(&m, "4:int", HR_INT32.0, 1, true).await[0].signed(),
        -123456789
    );
    assert_eq!(
        mb_read(&m, "4:int", HR_INT32.0 + 4, 1, false).await[0].signed(),
        -123456789
    );
    assert_eq!(
        mb_read(&m, "4:float", HR_FLOAT.0, 1, true).await[0].float() as f32,
        123.456
    );
    assert_eq!(
        mb_read(&m, "4:float", HR_FLOAT.0 + 4, 1, false).await[0].float() as f32,
        123.456
    );
    assert_eq!(
        mb_read(&m, "4", HR_ARITH_INT16.0, 1, false).await[0].signed(),
        i64::from(HR_ARITH_INT16.1)
    );
    assert_eq!(
        mb_read(&m, "4", HR_ARITH_UINT16.0, 1, false).await[0].unsigned(),
        u64::from(HR_ARITH_UINT16.1)
    );
    assert_eq!(
        mb_read(&m, "4:float", HR_UNIT_FLOAT, 1, true).await[0].float(),
        1.25
    );
    let ir = mb_read(&m, "3", 0, 2, false).await;
    assert_eq!((ir[0].unsigned(), ir[1].signed()), (1234, -1000));
    assert_eq!(
        mb_read(&m, "3:float", IR_FLOAT_BE.0, 1, true).await[0].float(),
        3.5
    );
    assert_eq!(
        mb_read(&m, "3:float", IR_FLOAT_LE.0, 1, false).await[0].float(),
        3.5
    );
    assert_eq!(
        mb_read(&m, "3:int", IR_INT32.0, 1, true).await[0].signed(),
        -100000
    );
    assert_eq!(mb_read(&m, "3", IR_UNIT, 1, false).await[0].unsigned(), 10);
    let bits =
        |r: Vec<crate::peers::Reading>| r.iter().map(|x| x.unsigned() == 1).collect::<Vec<_>>();
    assert_eq!(bits(mb_read(&m, "0", 0, 8, false).await), COILS_UNIT1);
    assert_eq!(bits(mb_read(&m, "1", 0, 8, false).await), DISCRETE);
    for addr in [
        HR_W_INT16,
        HR_W_UINT32,
        HR_W_UINT32 + 1,
        HR_W_FLOAT,
        HR_W_FLOAT + 1,
        HR_W_UINT16,
    ] {
        assert_eq!(
            mb_read(&m, "4", addr, 1, false).await[0].unsigned(),
            0,
            "write area {addr}"
        );
    }
    assert_eq!(coil(&m, CO_W).await, 0);
    // Writes by mbpoll read back.
    mb_write(&m, "4", HR_W_UINT16, &["4321"]).await;
    assert_eq!(
        mb_read(&m, "4", HR_W_UINT16, 1, false).await[0].unsigned(),
        4321
    );
    mb_write(&m, "0", CO_W, &["1"]).await;
    assert_eq!(coil(&m, CO_W).await, 1);
    // Out of range is exception 2; an unknown worker is an error too.
    let m2 = m.clone();
    let err = tokio::task::spawn_blocking(move || m2.read("4", OUT_OF_RANGE, 1, false))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("Illegal data address"), "{err}");
    let m9 = Arc::new(mb(Line::Tcp(server.port), 9).await);
    let err = tokio::task::spawn_blocking(move || m9.read("4", HR_WHO, 1, false))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("failed"), "{err}");
    let m2 = Arc::new(mb(Line::Tcp(server.port), 2).await);
    assert_eq!(
        mb_read(&m2, "4", HR_WHO, 1, false).await[0].unsigned(),
        2222
    );
    assert_eq!(
        mb_read(&m2, "4:float", HR_UNIT_FLOAT, 1, true).await[0].float(),
        2.5
    );
    assert_eq!(bits(mb_read(&m2, "0", 0, 8, false).await), COILS_UNIT2);
    assert_eq!(mb_read(&m2, "3", IR_UNIT, 1, false).await[0].unsigned(), 20);
    // Stopped, it refuses; restarted on the same port, it serves again (fresh layout).
    let port = server.port;
    server.stop();
    let m3 = m.clone();
    assert!(
        tokio::task::spawn_blocking(move || m3.read("4", HR_WHO, 1, false))
            .await
            .unwrap()
            .is_err()
    );
    let _again = ModbusServer::tcp_on(dir.path(), port);
    assert_eq!(mb_read(&m, "4", HR_WHO, 1, false).await[0].unsigned(), 1111);
    assert_eq!(
        mb_read(&m, "4", HR_W_UINT16, 1, false).await[0].unsigned(),
        0
    );

    // RTU over a pty pair: both workers answer; junk on the line is survived; a missing
    // worker is silent (mbpoll times out).
    let (pair, _rtu) = rtu_line(dir.path()).await;
    let r1 = Arc::new(mb(Line::Rtu(pair.b.clone(), BAUD), 1).await);
    let hex = mb_read(&r1, "4:hex", 0, 88, false).await;
    for (addr, want) in expected_holding() {
        assert_eq!(
            hex[usize::from(addr)].unsigned(),
            u64::from(want),
            "RTU holding register {addr}"
        );
    }
    let junk_to = pair.b.clone();
    tokio::task::spawn_blocking(move || spray_junk(&junk_to, Duration::from_millis(300)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = r1.clone();
        match tokio::task::spawn_blocking(move || r.read("4", HR_WHO, 1, false))
            .await
            .unwrap()
        {
            Ok(v) if v[0].unsigned() == 1111 => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "RTU after junk: {other:?}"
            ),
        }
    }
    let r7 = Arc::new(mb(Line::Rtu(pair.b.clone(), BAUD), 7).await);
    let err = tokio::task::spawn_blocking(move || r7.read("4", HR_WHO, 1, false))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("timed out"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 1. Every register kind, type and byte order over TCP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reads_every_register_kind_type_and_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let m = Arc::new(mb(Line::Tcp(server.port), 1).await);

    // The peer holds what the layout says (checked by an independent master).
    let hex = mb_read(&m, "4:hex", 0, 88, false).await;
    for (addr, want) in expected_holding() {
        let got = hex[usize::from(addr)].unsigned();
        assert_eq!(
            got,
            u64::from(want),
            "the server's holding register {addr} is {got:#06x}, the layout says {want:#06x}"
        );
    }

    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let layout = layout();
    let names: Vec<&str> = layout.iter().map(|e| e.name.as_str()).collect();
    let dev = h.spawn(
        modbus(
            "plc",
            tcp_spec(&server.endpoint(), 1, layout.iter().map(property).collect()),
        ),
        a.clone(),
    );
    let unit2 = [
        expect("hrWho", HR, HR_WHO, 1, "uint16", None, "2222"),
        expect("hrUnitFloat", HR, HR_UNIT_FLOAT, 2, "float", None, "2.5"),
        expect("irUnit", IR, IR_UNIT, 1, "uint16", None, "20"),
        expect(
            "coils8",
            CO,
            0,
            8,
            "hexString",
            None,
            packed_hex(&COILS_UNIT2),
        ),
        expect("coil0", CO, 0, 1, "boolean", None, "false"),
    ];
    let dev2 = h.spawn(
        modbus(
            "plc-unit2",
            tcp_spec(&server.endpoint(), 2, unit2.iter().map(property).collect()),
        ),
        a,
    );
    let r = h
        .wait(&key("plc"), Duration::from_secs(20), |r| {
            r.polls >= 2 && all_read(r, &names)
        })
        .await;
    assert_eq!(r.phase, Phase::Healthy, "{r:#?}");
    assert!(
        r.grants.iter().any(|g| g.contains("protocol.tcp.endpoint")),
        "{:?}",
        r.grants
    );
    let got = props(&r);
    let mut wrong = Vec::new();
    for e in &layout {
        let p = &got[&e.name];
        if p["value"] != e.value.as_str() {
            wrong.push(format!(
                "{} ({} {} at {} x{} {:?}): read {}, the server holds {}",
                e.name, e.ty, e.register, e.offset, e.quantity, e.endianness, p["value"], e.value
            ));
        }
        assert_eq!(p["type"], e.ty, "{p}");
        assert!(p["updatedAt"].is_string(), "no updatedAt: {p}");
        assert!(
            p.get("operatedValue").is_none_or(Value::is_null),
            "operatedValue without orderOfOperations: {p}"
        );
    }
    assert!(wrong.is_empty(), "wrong values:\n{}", wrong.join("\n"));

    // The same values as the independent master decodes them.
    let v = |n: &str| got[n]["value"].as_str().unwrap().to_owned();
    let hr0 = mb_read(&m, "4", HR_INT16.0, 2, false).await;
    assert_eq!(v("hrInt16").parse::<i64>().unwrap(), hr0[0].signed());
    assert_eq!(v("hrUint16").parse::<u64>().unwrap(), hr0[1].unsigned());
    let int_be = mb_read(&m, "4:int", HR_INT32.0, 1, true).await;
    assert_eq!(
        v("int32BigEndian").parse::<i64>().unwrap(),
        int_be[0].signed()
    );
    let int_le = mb_read(&m, "4:int", HR_INT32.0 + 4, 1, false).await;
    assert_eq!(
        v("int32LittleEndian").parse::<i64>().unwrap(),
        int_le[0].signed()
    );
    let float_be = mb_read(&m, "4:float", HR_FLOAT.0, 1, true).await;
    assert_eq!(
        v("floatBigEndian").parse::<f32>().unwrap(),
        float_be[0].float() as f32
    );
    let float_le = mb_read(&m, "4:float", HR_FLOAT.0 + 4, 1, false).await;
    assert_eq!(
        v("floatLittleEndian").parse::<f32>().unwrap(),
        float_le[0].float() as f32
    );
    let ir = mb_read(&m, "3", 0, 2, false).await;
    assert_eq!(v("irUint16").parse::<u64>().unwrap(), ir[0].unsigned());
    assert_eq!(v("irInt16").parse::<i64>().unwrap(), ir[1].signed());
    let ir_f = mb_read(&m, "3:float", IR_FLOAT_BE.0, 1, true).await;
    assert_eq!(
        v("irFloatBE").parse::<f32>().unwrap(),
        ir_f[0].float() as f32
    );
    let ir_f = mb_read(&m, "3:float", IR_FLOAT_LE.0, 1, false).await;
    assert_eq!(
        v("irFloatLE").parse::<f32>().unwrap(),
        ir_f[0].float() as f32
    );
    let ir_i = mb_read(&m, "3:int", IR_INT32.0, 1, true).await;
    assert_eq!(v("irInt32").parse::<i64>().unwrap(), ir_i[0].signed());
    let coils = mb_read(&m, "0", 0, 8, false).await;
    let dis = mb_read(&m, "1", 0, 8, false).await;
    for i in 0..8 {
        assert_eq!(
            v(&format!("coil{i}")) == "true",
            coils[i].unsigned() == 1,
            "coil {i}"
        );
        assert_eq!(
            v(&format!("discrete{i}")) == "true",
            dis[i].unsigned() == 1,
            "discrete input {i}"
        );
    }

    // Worker 2 on the same server is told apart.
    let r2 = h
        .wait(&key("plc-unit2"), Duration::from_secs(20), |r| {
            r.polls >= 2 && all_read(r, &["hrWho", "hrUnitFloat", "irUnit", "coils8", "coil0"])
        })
        .await;
    for e in &unit2 {
        assert_eq!(
            value_of(&r2, &e.name).as_deref(),
            Some(e.value.as_str()),
            "unit 2 {}",
            e.name
        );
    }
    let who2 = mb_read(
        &Arc::new(mb(Line::Tcp(server.port), 2).await),
        "4",
        HR_WHO,
        1,
        false,
    )
    .await;
    assert_eq!(who2[0].unsigned(), 2222);

    // It keeps polling with fresh timestamps.
    let stamp = |r: &DeviceReport| props(r)["hrInt16"]["updatedAt"].clone();
    let later = h
        .wait(&key("plc"), Duration::from_secs(10), |x| {
            x.polls >= r.polls + 3 && stamp(x) != stamp(&r)
        })
        .await;
    assert_eq!(later.failed_polls, 0, "{later:#?}");
    dev.stop().await;
    dev2.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Writes: once when configured, again only when the value changes.

fn write_props(int16: &str, uint32: &str, float: &str, coil: &str, uint16: &str) -> Vec<Value> {
    vec![
        writable("wInt16", HR, HR_W_INT16, 1, "int16", int16),
        writable("wUint32", HR, HR_W_UINT32, 2, "uint32", uint32),
        writable("wFloat", HR, HR_W_FLOAT, 2, "float", float),
        writable("wCoil", CO, CO_W, 1, "boolean", coil),
        writable("wUint16", HR, HR_W_UINT16, 1, "uint16", uint16),
    ]
}

/// Waits until mbpoll reads `want` (signed 16-bit) at holding register `addr`.
async fn until_register(m: &Arc<Mbpoll>, addr: u16, want: i64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = mb_read(m, "4", addr, 1, false).await[0].signed();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: register {addr} holds {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When the supervisor last applied a changed spec.
fn last_reconfigured(r: &DeviceReport) -> Option<String> {
    r.events
        .iter()
        .rev()
        .find(|e| e.reason == "Reconfigured")
        .map(|e| e.time.clone())
}

async fn coil(m: &Arc<Mbpoll>, addr: u16) -> u64 {
    mb_read(m, "0", addr, 1, false).await[0].unsigned()
}

/// The writer test's int16 (7) and coil (0) as the slave holds them: `after` must not
/// have written them again.
async fn assert_not_rewritten(m: &Arc<Mbpoll>, after: &str) {
    assert_eq!(
        mb_read(m, "4", HR_W_INT16, 1, false).await[0].signed(),
        7,
        "{after} rewrote int16"
    );
    assert_eq!(coil(m, CO_W).await, 0, "{after} rewrote the coil");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_writes_once_and_again_only_when_the_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let m = Arc::new(mb(Line::Tcp(server.port), 1).await);
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let spec = |props: Vec<Value>| tcp_spec(&server.endpoint(), 1, props);
    let first = modbus(
        "writer",
        spec(write_props("-321", "4000000000", "-1.5", "true", "40000")),
    );
    let dev = h.spawn(first.clone(), a);
    let names = ["wInt16", "wUint32", "wFloat", "wCoil", "wUint16"];
    let r = h
        .wait(&key("writer"), Duration::from_secs(20), |r| {
            r.polls >= 2 && all_read(r, &names)
        })
        .await;
    for (n, want) in names
        .iter()
        .zip(["-321", "4000000000", "-1.5", "true", "40000"])
    {
        assert_eq!(
            value_of(&r, n).as_deref(),
            Some(want),
            "{n} read back: {r:#?}"
        );
    }
    // What the slave holds, read by another master.
    assert_eq!(
        mb_read(&m, "4", HR_W_INT16, 1, false).await[0].signed(),
        -321
    );
    let u32_regs = mb_read(&m, "4:hex", HR_W_UINT32, 2, false).await;
    assert_eq!(
        (u32_regs[0].unsigned(), u32_regs[1].unsigned()),
        (0xEE6B, 0x2800),
        "uint32 4000000000 big-endian"
    );
    assert_eq!(
        mb_read(&m, "4:float", HR_W_FLOAT, 1, true).await[0].float(),
        -1.5
    );
    assert_eq!(coil(&m, CO_W).await, 1);
    assert_eq!(
        mb_read(&m, "4", HR_W_UINT16, 1, false).await[0].unsigned(),
        40000
    );

    // Another master overwrites them; polling alone does not write them back.
    mb_write(&m, "4", HR_W_INT16, &["7"]).await;
    mb_write(&m, "4", HR_W_UINT16, &["5"]).await;
    mb_write(&m, "0", CO_W, &["0"]).await;
    let r = h
        .wait(&key("writer"), Duration::from_secs(10), |r| {
            value_of(r, "wInt16").as_deref() == Some("7")
                && value_of(r, "wCoil").as_deref() == Some("false")
        })
        .await;
    h.polls_past(&key("writer"), &r, 3).await;
    assert_eq!(
        mb_read(&m, "4", HR_W_INT16, 1, false).await[0].signed(),
        7,
        "rewritten while polling"
    );

    // A reconfigure with the same values does not write.
    let before = last_reconfigured(&h.ctx.board.get(&key("writer")).unwrap());
    dev.send(Sup::Update(first.clone(), vec![]));
    let r = h
        .wait(&key("writer"), Duration::from_secs(10), |r| {
            last_reconfigured(r).is_some() && last_reconfigured(r) != before
        })
        .await;
    h.polls_past(&key("writer"), &r, 3).await;
    assert_not_rewritten(&m, "an unchanged reconfigure").await;
    assert_eq!(
        mb_read(&m, "4", HR_W_UINT16, 1, false).await[0].unsigned(),
        5
    );

    // Nor does a change elsewhere in the spec (the sync interval).
    let mut other = spec(write_props("-321", "4000000000", "-1.5", "true", "40000"));
    other["parameters"]["syncInterval"] = "250ms".into();
    dev.send(Sup::Update(modbus("writer", other), vec![]));
    let r = h
        .wait(&key("writer"), Duration::from_secs(10), |r| {
            r.poll_interval_ms == Some(250)
        })
        .await;
    h.polls_past(&key("writer"), &r, 3).await;
    assert_not_rewritten(&m, "a reconfigure that changed only syncInterval").await;

    // A changed value is written; the unchanged ones are not.
    dev.send(Sup::Update(
        modbus(
            "writer",
            spec(write_props("-42", "4000000000", "2.25", "true", "40000")),
        ),
        vec![],
    ));
    until_register(&m, HR_W_INT16, -42, "the changed int16").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mb_read(&m, "4:float", HR_W_FLOAT, 1, true).await[0].float() != 2.25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed float was not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(coil(&m, CO_W).await, 0, "the unchanged coil was rewritten");
    assert_eq!(
        mb_read(&m, "4", HR_W_UINT16, 1, false).await[0].unsigned(),
        5,
        "the unchanged uint16 was rewritten"
    );
    h.wait(&key("writer"), Duration::from_secs(10), |r| {
        value_of(r, "wInt16").as_deref() == Some("-42")
            && value_of(r, "wFloat").as_deref() == Some("2.25")
    })
    .await;

    // A coil changed in the spec is written too.
    mb_write(&m, "0", CO_W, &["1"]).await;
    dev.send(Sup::Update(
        modbus(
            "writer",
            spec(write_props("-42", "4000000000", "2.25", "false", "40000")),
        ),
        vec![],
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while coil(&m, CO_W).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed coil was not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = h.ctx.board.get(&key("writer")).unwrap();
    assert_eq!(r.traps, 0, "{r:#?}");
    dev.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Arithmetic.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_of_operations_gives_exact_operated_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let op = |t: &str, v: &str| json!({"type": t, "value": v});
    let with_ops = |name: &str, offset: u16, q: u16, ty: &str, ops: Vec<Value>| {
        json!({"name": name, "type": ty, "readOnly": true, "visitor": {
            "register": HR, "offset": offset, "quantity": q, "orderOfOperations": ops}})
    };
    let (int16_at, int16) = HR_ARITH_INT16;
    let (uint16_at, uint16) = HR_ARITH_UINT16;
    let properties = vec![
        with_ops("divided", int16_at, 1, "int16", vec![op("Divide", "10")]),
        with_ops(
            "chain",
            int16_at,
            1,
            "int16",
            vec![op("Add", "5"), op("Multiply", "2")],
        ),
        with_ops(
            "unsigned",
            uint16_at,
            1,
            "uint16",
            vec![op("Subtract", "0.5"), op("Divide", "4")],
        ),
        with_ops(
            "scaled",
            HR_UNIT_FLOAT,
            2,
            "float",
            vec![op("Multiply", "4")],
        ),
        with_ops("plain", int16_at, 1, "int16", vec![]),
    ];
    let dev = h.spawn(
        modbus("calc", tcp_spec(&server.endpoint(), 1, properties)),
        a,
    );
    let names = ["divided", "chain", "unsigned", "scaled", "plain"];
    let r = h
        .wait(&key("calc"), Duration::from_secs(20), |r| {
            r.polls >= 1 && all_read(r, &names)
        })
        .await;
    let p = props(&r);
    let want: [(&str, String, f64); 4] = [
        ("divided", int16.to_string(), f64::from(int16) / 10.0),
        ("chain", int16.to_string(), (f64::from(int16) + 5.0) * 2.0),
        (
            "unsigned",
            uint16.to_string(),
            (f64::from(uint16) - 0.5) / 4.0,
        ),
        ("scaled", "1.25".to_string(), 5.0),
    ];
    assert_eq!((want[0].2, want[1].2, want[2].2), (-24.5, -480.0, 249.875));
    for (name, value, operated) in want {
        assert_eq!(p[name]["value"], value.as_str(), "{name}: {}", p[name]);
        let got = p[name]["operatedValue"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no operatedValue: {}", p[name]));
        assert_eq!(
            got.parse::<f64>().ok(),
            Some(operated),
            "{name}: operatedValue {got:?}, expected exactly {operated}"
        );
    }
    assert_eq!(p["plain"]["value"], int16.to_string().as_str());
    assert!(
        p["plain"].get("operatedValue").is_none_or(Value::is_null),
        "operatedValue without orderOfOperations: {}",
        p["plain"]
    );
    dev.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. RTU: two workers on one line share it.

fn rtu_props(unit: u8) -> Vec<Expect> {
    let coils = if unit == 1 { COILS_UNIT1 } else { COILS_UNIT2 };
    vec![
        expect(
            "who",
            HR,
            HR_WHO,
            1,
            "uint16",
            None,
            (u32::from(unit) * 1111).to_string(),
        ),
        expect("int16", HR, HR_INT16.0, 1, "int16", None, HR_INT16.1),
        expect(
            "unitFloat",
            HR,
            HR_UNIT_FLOAT,
            2,
            "float",
            None,
            if unit == 1 { "1.25" } else { "2.5" },
        ),
        expect(
            "int32",
            HR,
            HR_INT32.0 + 4,
            2,
            "int32",
            Some("LittleEndian"),
            HR_INT32.1,
        ),
        expect(
            "double",
            HR,
            HR_DOUBLE.0 + 12,
            4,
            "double",
            Some("LittleEndianSwap"),
            HR_DOUBLE.1,
        ),
        expect("coil0", CO, 0, 1, "boolean", None, coils[0].to_string()),
        expect(
            "discrete8",
            DI,
            0,
            8,
            "hexString",
            None,
            packed_hex(&DISCRETE),
        ),
        expect(
            "irUnit",
            IR,
            IR_UNIT,
            1,
            "uint16",
            None,
            (u32::from(unit) * 10).to_string(),
        ),
    ]
}

fn check(r: &DeviceReport, expected: &[Expect], who: &str) {
    let p = props(r);
    for e in expected {
        assert_eq!(
            p.get(&e.name).map(|p| p["value"].clone()),
            Some(Value::from(e.value.as_str())),
            "{who} {}: {:#}",
            e.name,
            r.status
        );
    }
}

/// Worker 1's properties read by the device `name` over the RTU line `tty`: the device,
/// what it should read, and its first report with every property read twice over.
async fn rtu_device_reading(
    h: &Harness,
    a: Arc<Adaptor>,
    name: &str,
    tty: &std::path::Path,
) -> (limb::supervisor::Handle, Vec<Expect>, DeviceReport) {
    let expected = rtu_props(1);
    let dev = h.spawn(
        modbus(
            name,
            rtu_spec(tty, 1, expected.iter().map(property).collect()),
        ),
        a,
    );
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let r = h
        .wait(&key(name), Duration::from_secs(20), |r| {
            r.polls >= 2 && all_read(r, &names)
        })
        .await;
    (dev, expected, r)
}

/// A pty pair with the RTU slave on ttyA, checked with mbpoll on ttyB before the limb
/// takes the line.
async fn rtu_line(dir: &std::path::Path) -> (PtyPair, ModbusServer) {
    let pair = PtyPair::new(dir);
    let server = ModbusServer::rtu(dir, &pair.a, BAUD);
    for unit in [1u8, 2] {
        let m = Arc::new(mb(Line::Rtu(pair.b.clone(), BAUD), unit).await);
        let who = mb_read(&m, "4", HR_WHO, 1, false).await;
        assert_eq!(
            who[0].unsigned(),
            u64::from(unit) * 1111,
            "mbpoll over RTU, unit {unit}"
        );
    }
    (pair, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_two_workers_share_one_line_and_both_keep_polling() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, _server) = rtu_line(dir.path()).await;
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let e1 = rtu_props(1);
    let e2 = rtu_props(2);
    let names: Vec<&str> = e1.iter().map(|e| e.name.as_str()).collect();
    let d1 = h.spawn(
        modbus(
            "rtu-1",
            rtu_spec(&pair.b, 1, e1.iter().map(property).collect()),
        ),
        a.clone(),
    );
    let d2 = h.spawn(
        modbus(
            "rtu-2",
            rtu_spec(&pair.b, 2, e2.iter().map(property).collect()),
        ),
        a,
    );
    let r1 = h
        .wait(&key("rtu-1"), Duration::from_secs(20), |r| {
            r.polls >= 3 && all_read(r, &names)
        })
        .await;
    let r2 = h
        .wait(&key("rtu-2"), Duration::from_secs(20), |r| {
            r.polls >= 3 && all_read(r, &names)
        })
        .await;
    check(&r1, &e1, "worker 1");
    check(&r2, &e2, "worker 2");
    assert!(
        r1.grants
            .iter()
            .any(|g| g.contains("protocol.rtu.endpoint")),
        "{:?}",
        r1.grants
    );

    // Both keep polling, at about their interval, with correct values and no errors
    // (a rate over 2 s is the case under test).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let l1 = h.ctx.board.get(&key("rtu-1")).unwrap();
    let l2 = h.ctx.board.get(&key("rtu-2")).unwrap();
    for (before, after, expected, who) in [(&r1, &l1, &e1, "worker 1"), (&r2, &l2, &e2, "worker 2")]
    {
        assert!(
            after.polls >= before.polls + 5,
            "{who} starved: {} polls in 2 s at {SYNC}",
            after.polls - before.polls
        );
        assert_eq!(after.phase, Phase::Healthy, "{who}: {after:#?}");
        assert_eq!(after.failed_polls, 0, "{who}: {after:#?}");
        assert!(errors(after).is_empty(), "{who}: {:?}", errors(after));
        check(after, expected, who);
        assert_ne!(
            props(after)["who"]["updatedAt"],
            props(before)["who"]["updatedAt"],
            "{who}: values not refreshed"
        );
    }
    d1.stop().await;
    d2.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Faults.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_server_gone_makes_the_device_unhealthy_and_it_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ModbusServer::tcp(dir.path());
    let port = server.port;
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let expected = vec![
        expect("who", HR, HR_WHO, 1, "uint16", None, "1111"),
        expect("float", HR, HR_FLOAT.0, 2, "float", None, HR_FLOAT.1),
    ];
    let dev = h.spawn(
        modbus(
            "flaky",
            tcp_spec(
                &server.endpoint(),
                1,
                expected.iter().map(property).collect(),
            ),
        ),
        a,
    );
    h.wait(&key("flaky"), Duration::from_secs(20), |r| {
        r.phase == Phase::Healthy && all_read(r, &["who", "float"])
    })
    .await;

    server.stop();
    let r = h
        .wait(&key("flaky"), Duration::from_secs(15), |r| {
            r.phase == Phase::Unhealthy
        })
        .await;
    let err = r.last_error.clone().unwrap_or_default();
    assert!(err.contains("unreachable"), "last error: {err:?}; {r:#?}");
    assert_eq!(connected(&r), Some(ConditionStatus::False), "{r:#?}");
    assert_eq!(r.traps, 0, "{r:#?}");
    // The last values stay on the board.
    check(&r, &expected, "while the server is gone");
    let failed = r.failed_polls;
    h.wait(&key("flaky"), Duration::from_secs(10), |x| {
        x.failed_polls >= failed + 2
    })
    .await;

    let _server = ModbusServer::tcp_on(dir.path(), port);
    let back = h
        .wait(&key("flaky"), Duration::from_secs(20), |r| {
            r.phase == Phase::Healthy && connected(r) == Some(ConditionStatus::True)
        })
        .await;
    let later = h
        .wait(&key("flaky"), Duration::from_secs(10), |x| {
            x.polls >= back.polls + 3 && x.phase == Phase::Healthy
        })
        .await;
    check(&later, &expected, "after the server came back");
    assert!(errors(&later).is_empty(), "{:?}", errors(&later));
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_junk_on_the_line_is_a_timeout_then_the_device_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, server) = rtu_line(dir.path()).await;
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let (dev, expected, r) = rtu_device_reading(&h, a, "noisy", &pair.b).await;
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    check(&r, &expected, "before the junk");

    // Watch every report while junk goes into the line towards the slave.
    let log = ErrorLog::start(&h);
    let junk_to = pair.b.clone();
    let written = tokio::task::spawn_blocking(move || spray_junk(&junk_to, Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(written > 0);
    let after = h
        .wait(&key("noisy"), Duration::from_secs(20), |x| {
            x.polls > r.polls + 2 && x.phase == Phase::Healthy && all_read(x, &names)
        })
        .await;
    let r2 = h.polls_past(&key("noisy"), &after, 3).await;
    let seen = log.of("noisy");
    assert!(
        seen.iter().any(|e| is_timeout(e)),
        "no timeout reported while junk was on the line ({written} bytes, polls {} -> {}); errors seen: {seen:?}; the slave's log:\n{}",
        r.polls,
        after.polls,
        server.proc.log_tail()
    );
    assert_eq!(r2.traps, 0, "{r2:#?}");
    check(&r2, &expected, "after the junk");
    assert!(errors(&r2).is_empty(), "{:?}", errors(&r2));
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_a_serial_line_that_goes_away_and_comes_back_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, server) = rtu_line(dir.path()).await;
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let (dev, expected, _) = rtu_device_reading(&h, a, "unplugged", &pair.b).await;
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();

    // The adapter is unplugged: the pty pair and the slave go away.
    let path = pair.b.clone();
    drop(server);
    drop(pair);
    let gone = h
        .wait(&key("unplugged"), Duration::from_secs(20), |r| {
            r.phase == Phase::Unhealthy
        })
        .await;
    eprintln!("while unplugged: {:?}", gone.last_error);

    // Plugged back in at the same path: the device reads again by itself.
    let pair = PtyPair::new(dir.path());
    let _server = ModbusServer::rtu(dir.path(), &pair.a, BAUD);
    assert_eq!(pair.b, path);
    let back = h
        .wait(&key("unplugged"), Duration::from_secs(30), |r| {
            r.phase == Phase::Healthy && r.polls > gone.polls + 2 && all_read(r, &names)
        })
        .await;
    check(&back, &expected, "after the line came back");
    assert_eq!(back.traps, 0);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_worker_id_the_server_does_not_have_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let expected = vec![expect("who", HR, HR_WHO, 1, "uint16", None, "1111")];
    let good = h.spawn(
        modbus(
            "good",
            tcp_spec(
                &server.endpoint(),
                1,
                expected.iter().map(property).collect(),
            ),
        ),
        a.clone(),
    );
    let ghost = h.spawn(
        modbus(
            "ghost",
            tcp_spec(
                &server.endpoint(),
                9,
                expected.iter().map(property).collect(),
            ),
        ),
        a,
    );
    // An error shows either on the device or on the property.
    let r = h
        .wait(&key("ghost"), Duration::from_secs(20), |r| {
            r.failed_polls + r.polls >= 3 && !errors(r).is_empty()
        })
        .await;
    assert_eq!(r.traps, 0, "{r:#?}");
    assert!(
        !matches!(r.phase, Phase::Backoff | Phase::Quarantined),
        "{r:#?}"
    );
    assert_ne!(
        value_of(&r, "who").as_deref(),
        Some("1111"),
        "worker 9 read worker 1's value"
    );
    let n = r.failed_polls + r.polls;
    let r = h
        .wait(&key("ghost"), Duration::from_secs(10), |x| {
            x.failed_polls + x.polls >= n + 3
        })
        .await;
    assert_eq!(r.traps, 0, "{r:#?}");
    eprintln!("worker 9 reported: {:?}", errors(&r));
    let g = h
        .wait(&key("good"), Duration::from_secs(10), |r| {
            r.polls >= 3 && all_read(r, &["who"])
        })
        .await;
    check(&g, &expected, "worker 1 next to the missing one");
    ghost.stop().await;
    good.stop().await;
}

/// Every error any device reported while it runs, as (device, error), in order.
struct ErrorLog {
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ErrorLog {
    fn start(h: &Harness) -> Self {
        let mut rx = h.ctx.board.subscribe();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let r = rx.recv().await;
                    let mut seen = seen.lock().unwrap();
                    for e in errors(&r) {
                        if seen.last() != Some(&(r.name.clone(), e.clone())) {
                            seen.push((r.name.clone(), e));
                        }
                    }
                }
            }
        });
        Self { seen, task }
    }

    fn of(&self, device: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == device)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

impl Drop for ErrorLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_a_silent_worker_id_times_out_and_its_neighbour_keeps_polling() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, _server) = rtu_line(dir.path()).await;
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let log = ErrorLog::start(&h);
    // One property each, so one poll is one turn on the bus.
    let expected = vec![rtu_props(1).remove(0)];
    let good = h.spawn(
        modbus(
            "bus-good",
            rtu_spec(&pair.b, 1, expected.iter().map(property).collect()),
        ),
        a.clone(),
    );
    let r = h
        .wait(&key("bus-good"), Duration::from_secs(20), |r| {
            r.polls >= 2 && all_read(r, &["who"])
        })
        .await;
    let silent = h.spawn(
        modbus(
            "bus-silent",
            rtu_spec(&pair.b, 7, vec![property(&expected[0])]),
        ),
        a,
    );
    let s = h
        .wait(&key("bus-silent"), Duration::from_secs(20), |r| {
            r.failed_polls >= 2
        })
        .await;
    assert_eq!(s.traps, 0, "{s:#?}");
    assert!(
        !matches!(s.phase, Phase::Backoff | Phase::Quarantined),
        "{s:#?}"
    );
    assert_ne!(
        value_of(&s, "who").as_deref(),
        Some("1111"),
        "worker 7 read worker 1's value"
    );
    // The neighbour polls on: each of its turns waits out at most one timeout of the
    // silent worker (300 ms), so over 3 s at a 200 ms interval at least 4 polls.
    let before = h.ctx.board.get(&key("bus-good")).unwrap();
    assert!(before.polls >= r.polls);
    // A rate over 3 s is the case under test.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = h.ctx.board.get(&key("bus-good")).unwrap();
    let silent_errors = log.of("bus-silent");
    let good_errors = log.of("bus-good");
    assert!(
        silent_errors.iter().any(|e| is_timeout(e)),
        "a slave that never answers should be a timeout; worker 7 reported: {silent_errors:#?}"
    );
    assert!(
        good_errors.is_empty(),
        "worker 1 had errors next to a silent worker: {good_errors:#?}\nworker 7: {silent_errors:#?}"
    );
    assert!(
        silent_errors
            .iter()
            .all(|e| is_timeout(e) || e.contains("unreachable")),
        "worker 7 reported something other than a timeout (cross-talk on the bus?): {silent_errors:#?}"
    );
    assert!(
        after.polls >= before.polls + 4,
        "the neighbour was starved: {} polls in 3 s",
        after.polls - before.polls
    );
    assert_eq!(after.phase, Phase::Healthy, "{after:#?}");
    check(&after, &expected, "worker 1 next to a silent worker");
    silent.stop().await;
    good.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_out_of_range_is_that_propertys_error_and_the_others_keep_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let h = harness_modbus();
    let a = h.load("adaptor_modbus").await;
    let expected = vec![
        expect("who", HR, HR_WHO, 1, "uint16", None, "1111"),
        expect("irInt16", IR, IR_INT16.0, 1, "int16", None, IR_INT16.1),
    ];
    let mut properties: Vec<Value> = expected.iter().map(property).collect();
    properties.insert(
        1,
        property(&expect("beyond", HR, OUT_OF_RANGE, 1, "uint16", None, "")),
    );
    let dev = h.spawn(
        modbus("partial", tcp_spec(&server.endpoint(), 1, properties)),
        a,
    );
    let r = h
        .wait(&key("partial"), Duration::from_secs(20), |r| {
            r.polls >= 2
                && props(r)
                    .get("beyond")
                    .is_some_and(|p| p["error"].is_string())
        })
        .await;
    let p = props(&r);
    let err = p["beyond"]["error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("illegal data address"),
        "the out-of-range property's error: {err:?}"
    );
    check(&r, &expected, "next to an out-of-range property");
    for e in &expected {
        assert!(
            p[&e.name].get("error").is_none_or(Value::is_null),
            "{}: {}",
            e.name,
            p[&e.name]
        );
    }
    assert_eq!(r.traps, 0, "{r:#?}");
    dev.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Standalone mode: examples/modbus/modbus-tcp.yaml against the TCP slave.

/// The `limb standalone` binary on a folder, killed by its PID when dropped.
pub(crate) struct StandaloneLimb {
    child: std::process::Child,
    port: u16,
}

impl Drop for StandaloneLimb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandaloneLimb {
    pub(crate) fn start(dir: &std::path::Path) -> Self {
        let port = crate::peers::free_port();
        let child = std::process::Command::new(octopus_tests::bins::limb())
            .arg("standalone")
            .arg(dir)
            .args([
                "--output",
                "json",
                "--scan-interval",
                "200ms",
                "--call-timeout",
                "1s",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.join("limb.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("limb.err")).unwrap())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    fn device(&self, name: &str) -> Option<Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /devices/default/{name} HTTP/1.0\r\nHost: localhost\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200"))
            .then(|| serde_json::from_str(body).ok())
            .flatten()
    }

    pub(crate) async fn wait(
        &mut self,
        name: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the limb exited while waiting for {what}"
            );
            if let Some(d) = self.device(name)
                && pred(&d)
            {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {what} not seen; last: {:#?}",
                self.device(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_runs_the_modbus_tcp_example_against_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let example = std::fs::read_to_string(repo_file("examples/modbus/modbus-tcp.yaml")).unwrap();
    assert!(
        example.contains("127.0.0.1:15020"),
        "the example's endpoint moved"
    );
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    std::fs::write(
        links.join("modbus-tcp.yaml"),
        example.replace("127.0.0.1:15020", &server.endpoint()),
    )
    .unwrap();
    std::fs::write(links.join("modbus.wasm"), component("adaptor_modbus")).unwrap();
    let mut limb = StandaloneLimb::start(&links);
    let value = |d: &Value, n: &str| {
        d["status"]["properties"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == n).cloned())
            .unwrap_or(Value::Null)
    };
    let names = [
        "temperature",
        "model",
        "counter",
        "pressure",
        "running",
        "limitation",
    ];
    let d = limb
        .wait("modbus-tcp", "healthy polls with every property", |d| {
            d["phase"] == "Healthy"
                && d["polls"].as_u64().unwrap_or(0) >= 2
                && names.iter().all(|n| value(d, n)["value"].is_string())
        })
        .await;
    assert_eq!(value(&d, "temperature")["value"], "-245", "{d:#}");
    assert_eq!(
        value(&d, "temperature")["operatedValue"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok()),
        Some(-24.5),
        "{d:#}"
    );
    assert_eq!(value(&d, "model")["value"], HR_STRING.2, "{d:#}");
    assert_eq!(value(&d, "counter")["value"], HR_UINT32.1, "{d:#}");
    assert_eq!(value(&d, "pressure")["value"], IR_FLOAT_BE.1, "{d:#}");
    assert_eq!(value(&d, "running")["value"], "true", "{d:#}");
    assert_eq!(value(&d, "limitation")["value"], "30", "{d:#}");
    let m = Arc::new(mb(Line::Tcp(server.port), 1).await);
    assert_eq!(
        mb_read(&m, "4", HR_W_INT16, 1, false).await[0].signed(),
        30,
        "the example's writable limit reached the slave"
    );
    let out = std::fs::read_to_string(links.join("limb.out")).unwrap_or_default();
    assert!(
        out.contains("modbus-tcp"),
        "no JSON lines for the device: {out}"
    );
}
