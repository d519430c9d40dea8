//! The Modbus adaptor's codec, value conversions and spec parser
//! (`adaptors-wasm/modbus`: `codec.rs`, `value.rs`, `spec.rs`), natively.
//!
//! Input, by its first byte modulo 3:
//! - 0, a reply: `[request kind][address:2][count:2][unit][tcp?]` then the bytes a slave
//!   sent, read as a Modbus TCP frame (MBAP header then PDU) or an RTU frame (CRC
//!   checked), and as a bare PDU, against the request the header describes;
//! - 1, a value: `[type][byte order][quantity:2]` then bytes, decoded as registers (and
//!   encoded back from the rendered value) and encoded from as text;
//! - 2, a spec: the rest is a `ModbusDevice` spec in JSON, as the limb hands it over.
#![no_main]

use adaptor_modbus::fuzz::codec::{self, Reply, Request, Table};
use adaptor_modbus::fuzz::spec;
use adaptor_modbus::fuzz::value::{self, Endianness, Value, ValueType};
use libfuzzer_sys::fuzz_target;

const TYPES: [ValueType; 11] = [
    ValueType::Int16,
    ValueType::Int32,
    ValueType::Int64,
    ValueType::Uint16,
    ValueType::Uint32,
    ValueType::Uint64,
    ValueType::Float,
    ValueType::Double,
    ValueType::Boolean,
    ValueType::HexString,
    ValueType::String,
];
const ORDERS: [Endianness; 4] = [
    Endianness::BigEndian,
    Endianness::BigEndianSwap,
    Endianness::LittleEndian,
    Endianness::LittleEndianSwap,
];
const TABLES: [Table; 4] = [
    Table::Coil,
    Table::DiscreteInput,
    Table::Input,
    Table::Holding,
];

fn request(kind: u8, address: u16, count: u16) -> Request {
    match kind % 8 {
        k @ 0..=3 => Request::Read {
            table: TABLES[usize::from(k)],
            address,
            count,
        },
        4 => Request::WriteCoil {
            address,
            value: count & 1 == 1,
        },
        5 => Request::WriteRegister {
            address,
            value: count,
        },
        6 => Request::WriteCoils {
            address,
            values: (0..count % (codec::MAX_WRITE_COILS + 1))
                .map(|i| (i ^ address) % 3 == 0)
                .collect(),
        },
        _ => Request::WriteRegisters {
            address,
            values: (0..count % (codec::MAX_WRITE_REGISTERS + 1))
                .map(|i| address.wrapping_add(i))
                .collect(),
        },
    }
}

fn decode(request: &Request, pdu: &[u8]) {
    match request.decode_reply(pdu) {
        Ok(Reply::Registers(r)) => {
            assert!(
                matches!(request, Request::Read { table, count, .. } if !table.is_bits() && usize::from(*count) == r.len())
            );
        }
        Ok(Reply::Bits(b)) => {
            assert!(
                matches!(request, Request::Read { table, count, .. } if table.is_bits() && usize::from(*count) == b.len())
            );
        }
        Ok(Reply::Written) => assert!(!matches!(request, Request::Read { .. })),
        Err(e) => drop(e.to_string()),
    }
}

fn reply(data: &[u8]) {
    let [kind, a0, a1, c0, c1, unit, tcp, frame @ ..] = data else {
        return;
    };
    let request = request(
        *kind,
        u16::from_be_bytes([*a0, *a1]),
        u16::from_be_bytes([*c0, *c1]),
    );
    let pdu = request.encode();
    let within_limits = match &request {
        Request::Read { table, count, .. } => *count <= table.read_limit(),
        _ => true,
    };
    if within_limits {
        assert!(pdu.len() <= codec::MAX_PDU_LEN, "{request:?}");
    }
    if tcp & 1 == 1 {
        if let Some((header, rest)) = frame.split_first_chunk::<{ codec::MBAP_HEADER_LEN }>()
            && let Ok(h) = codec::mbap_header(header)
        {
            assert!((1..=codec::MAX_PDU_LEN).contains(&h.pdu_len));
            if let Some(pdu) = rest.get(..h.pdu_len) {
                decode(&request, pdu);
            }
        }
    } else if let Ok(pdu) = codec::rtu_unframe(*unit, frame) {
        assert_eq!(pdu.len() + 3, frame.len());
        decode(&request, pdu);
    }
    decode(&request, frame);

    // Frames we build read back.
    if (1..=codec::MAX_PDU_LEN).contains(&frame.len()) {
        let mbap = codec::mbap_frame(u16::from(*kind), *unit, frame);
        let header = mbap.first_chunk().expect("a whole header");
        let h = codec::mbap_header(header).expect("our own MBAP header");
        assert_eq!((h.unit, h.pdu_len), (*unit, frame.len()));
    }
    if !frame.is_empty() {
        let rtu = codec::rtu_frame(*unit, frame);
        assert_eq!(codec::rtu_unframe(*unit, &rtu), Ok(frame));
    }
    // A well-formed reply to a read within the limits decodes.
    if let Request::Read { table, count, .. } = &request
        && within_limits
    {
        let len = request.reply_len() - 2;
        let mut payload: Vec<u8> = frame.iter().copied().cycle().take(len).collect();
        payload.resize(len, 0);
        if table.is_bits() && *count % 8 != 0 && len > 0 {
            // Bits past the count are padding.
            payload[len - 1] &= (1u8 << (*count % 8)) - 1;
        }
        let mut good = vec![
            request.function(),
            u8::try_from(len).expect("within limits"),
        ];
        good.extend(&payload);
        let decoded = request.decode_reply(&good).expect("a well-formed reply");
        if let Reply::Bits(bits) = decoded {
            assert_eq!(value::pack_bits(&bits), payload);
        }
    }
    let baud = u32::from_be_bytes([*a0, *a1, *c0, *c1]);
    assert!(codec::rtu_silence_ms(baud, u32::from(*unit % 16)) >= 5);
}

/// Types whose rendered value encodes back to the same registers.
fn exact(kind: ValueType, v: &Value) -> bool {
    match v {
        Value::Float(f) => !f.is_nan(),
        Value::Double(d) => !d.is_nan(),
        _ => !matches!(kind, ValueType::Boolean | ValueType::String),
    }
}

fn values(data: &[u8]) {
    let [kind, order, q0, q1, rest @ ..] = data else {
        return;
    };
    let kind = TYPES[usize::from(*kind) % TYPES.len()];
    let order = ORDERS[usize::from(*order) % ORDERS.len()];
    let quantity = u16::from_be_bytes([*q0, *q1]) % 512;

    let registers: Vec<u16> = rest
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if let Ok(v) = value::decode_registers(kind, order, &registers) {
        let _ = v.as_f64();
        if exact(kind, &v) {
            let n = u16::try_from(registers.len()).expect("short input");
            let again = value::encode_registers(kind, order, n, &v.render())
                .unwrap_or_else(|e| panic!("{v:?} renders as {:?}: {e}", v.render()));
            assert_eq!(again, registers, "{kind:?} {order:?} {v:?}");
        }
    }

    let text = String::from_utf8_lossy(rest);
    if let Ok(encoded) = value::encode_registers(kind, order, quantity, &text) {
        assert_eq!(encoded.len(), usize::from(quantity));
        let v = value::decode_registers(kind, order, &encoded)
            .unwrap_or_else(|e| panic!("{text:?} encodes but does not decode: {e}"));
        if exact(kind, &v) {
            assert_eq!(
                value::encode_registers(kind, order, quantity, &v.render()).as_ref(),
                Ok(&encoded)
            );
        }
    }
    if let Ok(bits) = value::encode_bits(kind, quantity, &text) {
        assert_eq!(bits.len(), usize::from(quantity));
        let v = value::decode_bits(kind, &bits).expect("bits we encoded decode");
        if kind == ValueType::HexString {
            assert_eq!(value::encode_bits(kind, quantity, &v.render()), Ok(bits));
        }
    }
    let bits = value::unpack_bits(rest, usize::from(quantity));
    let packed = value::pack_bits(&bits);
    assert_eq!(value::unpack_bits(&packed, bits.len()), bits);
    let _ = value::parse_bool(&text);
    let _ = ValueType::parse(&text).map(ValueType::name);
    let _ = Endianness::parse(&text).map(Endianness::name);
    let _ = Table::parse(&text).map(Table::name);
}

fn spec(text: &str) {
    let Ok(s) = spec::parse(text) else {
        return;
    };
    for p in &s.properties {
        let _ = p.read_signature();
        assert!(p.quantity <= p.table.read_limit(), "{p:?}");
        if let Some(w) = &p.write {
            let pdu = w.request.encode();
            assert!(pdu.len() <= codec::MAX_PDU_LEN, "{p:?}");
            if matches!(
                w.request,
                Request::WriteCoil { .. } | Request::WriteRegister { .. }
            ) {
                assert_eq!(w.request.decode_reply(&pdu), Ok(Reply::Written));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => reply(rest),
        1 => values(rest),
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                spec(text);
            }
        }
    }
});
