//! One poll of a device: pending writes, then batched reads, then the status document.
//!
//! The engine talks to the slave only through the [`Bus`] trait, so the whole cycle
//! (write-on-change, batching, per-property errors, giving up on an unreachable
//! device) is tested natively against a simulated slave.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::codec::{Exception, Reply, Request};
use crate::plan::{self, Batch, Span};
use crate::spec::{Property, Spec};
use crate::state::{Memory, Reading};
use crate::value;

/// A way to exchange one request and its reply with the slave.
pub trait Bus {
    fn request(&mut self, request: &Request) -> Result<Reply, BusError>;
}

/// Why one request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// No answer: the connection failed, was lost, or the reply timed out.
    Unreachable(String),
    /// The host refused the capability (no grant, policy, conflicting line settings).
    Denied(String),
    /// The slave answered with an exception.
    Exception(Exception),
    /// The slave answered with something that is not the reply.
    Invalid(String),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Unreachable(m) | BusError::Denied(m) | BusError::Invalid(m) => f.write_str(m),
            BusError::Exception(e) => e.fmt(f),
        }
    }
}

/// Why a poll stopped early: the device as a whole, not one property, is the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Unreachable(String),
    Denied(String),
}

/// The result of one poll: the status document (JSON) and, if the poll gave up, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: String,
    pub failure: Option<Failure>,
}

/// What one request means for the rest of the poll.
enum Verdict {
    Done(Reply),
    /// Only the properties of this request are affected.
    Local(String),
    /// The device cannot be talked to: skip everything else.
    Stop(Failure, String),
}

fn judge(result: Result<Reply, BusError>) -> Verdict {
    match result {
        Ok(reply) => Verdict::Done(reply),
        Err(BusError::Unreachable(m)) => Verdict::Stop(Failure::Unreachable(m.clone()), m),
        Err(BusError::Denied(m)) => Verdict::Stop(Failure::Denied(m.clone()), m),
        Err(BusError::Exception(e)) if e.means_unreachable() => Verdict::Stop(
            Failure::Unreachable(format!("{e}: check the workerID and the gateway")),
            e.to_string(),
        ),
        Err(other) => Verdict::Local(other.to_string()),
    }
}

/// How a property fared in this poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    NotRead,
    Read,
    Failed(String),
}

/// A configured device's spec and read plan, plus what the last polls learned.
#[derive(Debug)]
pub struct Engine {
    spec: Spec,
    batches: Vec<Batch>,
    /// Batches the slave refused as a whole (an address in a gap does not exist);
    /// their members are read one by one from then on.
    split: BTreeSet<usize>,
    /// Why the last attempt to write a property failed, until a write succeeds.
    write_errors: BTreeMap<String, String>,
    /// Per property, the start of its status entry (`{"name":…,"type":…`), which only
    /// the spec decides: escaped once here rather than on every poll.
    heads: Vec<String>,
    /// How each property fared in the current poll; kept to reuse its allocation.
    slots: Vec<Slot>,
}

fn span_of(property: &Property) -> Span {
    Span {
        table: property.table,
        start: property.offset,
        count: property.quantity,
    }
}

fn read_request(span: Span) -> Request {
    Request::Read {
        table: span.table,
        address: span.start,
        count: span.count,
    }
}

impl Engine {
    pub fn new(spec: Spec) -> Engine {
        let spans: Vec<Span> = spec.properties.iter().map(span_of).collect();
        let heads = spec
            .properties
            .iter()
            .map(|property| {
                let mut head = String::from(r#"{"name":"#);
                json_string(&mut head, &property.name);
                head.push_str(r#","type":"#);
                json_string(&mut head, &property.type_name);
                head
            })
            .collect();
        Engine {
            batches: plan::plan(&spans),
            spec,
            split: BTreeSet::new(),
            write_errors: BTreeMap::new(),
            heads,
            slots: Vec::new(),
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// How many read requests a poll makes at best.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// Writes every value that is not yet on the device; stops at the first failure
    /// that concerns the whole device.
    pub fn write_pending(&mut self, memory: &mut Memory, bus: &mut dyn Bus) -> Option<Failure> {
        let Engine {
            spec, write_errors, ..
        } = self;
        for property in &spec.properties {
            let Some(write) = property
                .write
                .as_ref()
                .filter(|_| memory.needs_write(property))
            else {
                write_errors.remove(&property.name);
                continue;
            };
            match judge(bus.request(&write.request)) {
                Verdict::Done(_) => {
                    memory.record_write(property);
                    write_errors.remove(&property.name);
                }
                Verdict::Local(why) => {
                    write_errors.insert(property.name.clone(), why);
                }
                Verdict::Stop(failure, why) => {
                    write_errors.insert(property.name.clone(), why);
                    return Some(failure);
                }
            }
        }
        None
    }

    /// Writes what is pending, reads every property and builds the status.
    pub fn poll(&mut self, memory: &mut Memory, bus: &mut dyn Bus, now: &str) -> Outcome {
        let mut slots = std::mem::take(&mut self.slots);
        slots.clear();
        slots.resize(self.spec.properties.len(), Slot::NotRead);
        let failure = match self.write_pending(memory, bus) {
            Some(failure) => Some(failure),
            None => self.read_all(memory, bus, now, &mut slots),
        };
        let status = self.status(memory, &slots, failure.as_ref());
        self.slots = slots;
        Outcome { status, failure }
    }

    fn read_all(
        &mut self,
        memory: &mut Memory,
        bus: &mut dyn Bus,
        now: &str,
        slots: &mut [Slot],
    ) -> Option<Failure> {
        for (index, batch) in self.batches.iter().enumerate() {
            let merged = batch.members.len() > 1;
            if !(merged && self.split.contains(&index)) {
                let result = bus.request(&read_request(batch.span));
                if merged && result == Err(BusError::Exception(Exception::ILLEGAL_DATA_ADDRESS)) {
                    self.split.insert(index);
                } else {
                    match judge(result) {
                        Verdict::Done(reply) => self.store(memory, batch, &reply, now, slots),
                        Verdict::Local(why) => fail(&batch.members, &why, slots),
                        Verdict::Stop(failure, why) => {
                            fail(&batch.members, &why, slots);
                            return Some(failure);
                        }
                    }
                    continue;
                }
            }
            for &member in &batch.members {
                let Some(property) = self.spec.properties.get(member) else {
                    continue;
                };
                let single = Batch {
                    span: span_of(property),
                    members: vec![member],
                };
                match judge(bus.request(&read_request(single.span))) {
                    Verdict::Done(reply) => self.store(memory, &single, &reply, now, slots),
                    Verdict::Local(why) => fail(&single.members, &why, slots),
                    Verdict::Stop(failure, why) => {
                        fail(&single.members, &why, slots);
                        return Some(failure);
                    }
                }
            }
        }
        None
    }

    /// Decodes each member's share of a batch reply into its reading.
    fn store(
        &self,
        memory: &mut Memory,
        batch: &Batch,
        reply: &Reply,
        now: &str,
        slots: &mut [Slot],
    ) {
        for &member in &batch.members {
            let Some(property) = self.spec.properties.get(member) else {
                continue;
            };
            match decode(property, batch.span.start, reply) {
                Ok(decoded) => {
                    let operated = if property.operations.is_empty() {
                        None
                    } else {
                        decoded
                            .as_f64()
                            .map(|x| value::render_f64(value::operate(&property.operations, x)))
                    };
                    // Updated in place: a poll allocates nothing for a property it read before
                    // (float values aside: Go's formatting of them, `value::go_float`).
                    if let Some(reading) = memory.readings.get_mut(&property.name) {
                        property.read_signature().clone_into(&mut reading.signature);
                        decoded.render_into(&mut reading.value);
                        reading.operated = operated;
                        now.clone_into(&mut reading.updated_at);
                    } else {
                        memory.readings.insert(
                            property.name.clone(),
                            Reading {
                                signature: property.read_signature().to_owned(),
                                value: decoded.render(),
                                operated,
                                updated_at: now.to_owned(),
                            },
                        );
                    }
                    set(slots, member, Slot::Read);
                }
                Err(why) => set(slots, member, Slot::Failed(format!("read failed: {why}"))),
            }
        }
    }

    /// The status document, properties in spec order: written straight into one string,
    /// since building it as a JSON tree was most of a poll's work in the guest.
    fn status(&self, memory: &Memory, slots: &[Slot], failure: Option<&Failure>) -> String {
        let skipped = match failure {
            Some(Failure::Denied(_)) => "not read: access refused",
            _ => "not read: device unreachable",
        };
        let mut out = String::with_capacity(32 + 96 * self.spec.properties.len());
        out.push_str(r#"{"properties":["#);
        for (i, ((property, slot), head)) in self
            .spec
            .properties
            .iter()
            .zip(slots)
            .zip(&self.heads)
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(head);
            if let Some(reading) = memory.readings.get(&property.name) {
                out.push_str(r#","value":"#);
                json_string(&mut out, &reading.value);
                if let Some(operated) = &reading.operated {
                    out.push_str(r#","operatedValue":"#);
                    json_string(&mut out, operated);
                }
                out.push_str(r#","updatedAt":"#);
                json_string(&mut out, &reading.updated_at);
            }
            let mut errors = Vec::new();
            if let Some(why) = self.write_errors.get(&property.name)
                && memory.needs_write(property)
            {
                errors.push(format!("write failed: {why}"));
            }
            match slot {
                Slot::Read => {}
                Slot::Failed(why) => errors.push(why.clone()),
                Slot::NotRead => errors.push(skipped.to_owned()),
            }
            if !errors.is_empty() {
                out.push_str(r#","error":"#);
                json_string(&mut out, &errors.join("; "));
            }
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let mut rest = s;
    // Only ASCII needs escaping, so scanning bytes never splits a character.
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < b' ')
    {
        let (clean, tail) = rest.split_at(at);
        out.push_str(clean);
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

fn set(slots: &mut [Slot], index: usize, slot: Slot) {
    if let Some(s) = slots.get_mut(index) {
        *s = slot;
    }
}

fn fail(members: &[usize], why: &str, slots: &mut [Slot]) {
    for &member in members {
        set(slots, member, Slot::Failed(format!("read failed: {why}")));
    }
}

/// The property's items out of a reply that starts at `start`.
fn decode(property: &Property, start: u16, reply: &Reply) -> Result<value::Value, String> {
    let from = usize::from(property.offset.saturating_sub(start));
    let range = from..from + usize::from(property.quantity);
    let short = || "the reply is shorter than the request".to_owned();
    match reply {
        Reply::Registers(registers) if !property.table.is_bits() => {
            let registers = registers.get(range).ok_or_else(short)?;
            value::decode_registers(property.kind, property.endianness, registers)
        }
        Reply::Bits(bits) if property.table.is_bits() => {
            value::decode_bits(property.kind, bits.get(range).ok_or_else(short)?)
        }
        _ => Err("the reply does not match the request".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::codec::Table;
    use crate::spec;

    /// A slave with 100 items per table that records every request.
    struct Slave {
        coils: Vec<bool>,
        discrete: Vec<bool>,
        input: Vec<u16>,
        holding: Vec<u16>,
        /// Holding addresses that do not exist.
        holes: Vec<u16>,
        /// Every request fails with this.
        down: Option<BusError>,
        /// Writes fail with this exception.
        refuse_writes: Option<u8>,
        requests: Vec<Request>,
    }

    impl Slave {
        fn new() -> Slave {
            Slave {
                coils: vec![false; 100],
                discrete: vec![false; 100],
                input: vec![0; 100],
                holding: vec![0; 100],
                holes: Vec::new(),
                down: None,
                refuse_writes: None,
                requests: Vec::new(),
            }
        }

        fn take(&mut self) -> Vec<Request> {
            std::mem::take(&mut self.requests)
        }
    }

    impl Bus for Slave {
        fn request(&mut self, request: &Request) -> Result<Reply, BusError> {
            self.requests.push(request.clone());
            if let Some(err) = &self.down {
                return Err(err.clone());
            }
            let illegal = Err(BusError::Exception(Exception(2)));
            match request {
                Request::Read {
                    table,
                    address,
                    count,
                } => {
                    let range = usize::from(*address)..usize::from(*address) + usize::from(*count);
                    if *table == Table::Holding
                        && self.holes.iter().any(|h| range.contains(&usize::from(*h)))
                    {
                        return illegal;
                    }
                    let reply = match table {
                        Table::Coil => self.coils.get(range).map(|b| Reply::Bits(b.to_vec())),
                        Table::DiscreteInput => {
                            self.discrete.get(range).map(|b| Reply::Bits(b.to_vec()))
                        }
                        Table::Input => self.input.get(range).map(|r| Reply::Registers(r.to_vec())),
                        Table::Holding => self
                            .holding
                            .get(range)
                            .map(|r| Reply::Registers(r.to_vec())),
                    };
                    reply.ok_or(BusError::Exception(Exception(2)))
                }
                _ if self.refuse_writes.is_some() => Err(BusError::Exception(Exception(
                    self.refuse_writes.unwrap_or(4),
                ))),
                Request::WriteCoil { address, value } => {
                    self.coils[usize::from(*address)] = *value;
                    Ok(Reply::Written)
                }
                Request::WriteCoils { address, values } => {
                    let a = usize::from(*address);
                    self.coils[a..a + values.len()].copy_from_slice(values);
                    Ok(Reply::Written)
                }
                Request::WriteRegister { address, value } => {
                    self.holding[usize::from(*address)] = *value;
                    Ok(Reply::Written)
                }
                Request::WriteRegisters { address, values } => {
                    let a = usize::from(*address);
                    self.holding[a..a + values.len()].copy_from_slice(values);
                    Ok(Reply::Written)
                }
            }
        }
    }

    fn engine(properties: &str) -> Engine {
        Engine::new(
            spec::parse(&format!(
                r#"{{"protocol":{{"tcp":{{"endpoint":"a:1","workerID":1}}}},"properties":[{properties}]}}"#
            ))
            .unwrap(),
        )
    }

    const THERMOMETER: &str = r#"
        {"name":"temperature","type":"int16","readOnly":true,
         "visitor":{"register":"HoldingRegister","offset":0,
                    "orderOfOperations":[{"type":"Divide","value":"10"}]}},
        {"name":"limitation","type":"int16","value":"30",
         "visitor":{"register":"HoldingRegister","offset":5}},
        {"name":"alarm","type":"boolean","visitor":{"register":"CoilRegister","offset":3}},
        {"name":"serial","type":"string","readOnly":true,
         "visitor":{"register":"InputRegister","offset":10,"quantity":3}}"#;

    fn read(table: Table, address: u16, count: u16) -> Request {
        Request::Read {
            table,
            address,
            count,
        }
    }

    fn status(outcome: &Outcome) -> Value {
        serde_json::from_str(&outcome.status).unwrap()
    }

    fn property(outcome: &Outcome, name: &str) -> Value {
        status(outcome)["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    }

    #[test]
    fn first_poll_writes_once_then_only_reads() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.holding[0] = (-250i16).cast_unsigned();
        slave.coils[3] = true;
        slave.input[10] = u16::from_be_bytes(*b"AB");
        slave.input[11] = u16::from_be_bytes(*b"C\0");
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(outcome.failure, None);
        assert_eq!(
            slave.take(),
            [
                Request::WriteRegister {
                    address: 5,
                    value: 30
                },
                read(Table::Coil, 3, 1),
                read(Table::Input, 10, 3),
                read(Table::Holding, 0, 6),
            ]
        );
        assert_eq!(
            status(&outcome)["properties"][0],
            json!({"name":"temperature","type":"int16","value":"-250","operatedValue":"-25.000000","updatedAt":"T1"})
        );
        assert_eq!(property(&outcome, "limitation")["value"], "30");
        assert_eq!(property(&outcome, "alarm")["value"], "true");
        assert_eq!(property(&outcome, "serial")["value"], "ABC");
        assert!(property(&outcome, "serial").get("operatedValue").is_none());

        let outcome = engine.poll(&mut memory, &mut slave, "2024-05-01T10:00:00.250Z");
        assert_eq!(slave.take().len(), 3, "no second write");
        assert_eq!(
            crds::octopus::check("ModbusDevice", &status(&outcome)),
            Vec::<String>::new(),
            "reads as Octopus's status"
        );
    }

    #[test]
    fn an_unreachable_device_skips_the_rest_and_keeps_last_values() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        engine.poll(&mut memory, &mut slave, "T1");
        slave.take();
        slave.down = Some(BusError::Unreachable("no reply within 10000 ms".into()));
        let outcome = engine.poll(&mut memory, &mut slave, "T2");
        assert_eq!(
            outcome.failure,
            Some(Failure::Unreachable("no reply within 10000 ms".into()))
        );
        assert_eq!(slave.take(), [read(Table::Coil, 3, 1)], "gave up after one");
        let alarm = property(&outcome, "alarm");
        assert_eq!(alarm["error"], "read failed: no reply within 10000 ms");
        assert_eq!(alarm["value"], "false", "last value kept");
        assert_eq!(alarm["updatedAt"], "T1");
        assert_eq!(
            property(&outcome, "temperature")["error"],
            "not read: device unreachable"
        );
    }

    #[test]
    fn a_failed_write_is_reported_and_retried() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.refuse_writes = Some(3);
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(outcome.failure, None);
        assert_eq!(
            property(&outcome, "limitation")["error"],
            "write failed: illegal data value (exception 3)"
        );
        assert!(property(&outcome, "temperature").get("error").is_none());
        slave.refuse_writes = None;
        slave.take();
        let outcome = engine.poll(&mut memory, &mut slave, "T2");
        assert!(matches!(slave.take()[0], Request::WriteRegister { .. }));
        assert!(property(&outcome, "limitation").get("error").is_none());
        assert_eq!(slave.holding[5], 30);
    }

    #[test]
    fn an_unreachable_device_during_writes_reads_nothing() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.down = Some(BusError::Unreachable("connection refused".into()));
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(slave.take().len(), 1);
        assert_eq!(
            property(&outcome, "limitation")["error"],
            "write failed: connection refused; not read: device unreachable"
        );
        assert!(memory.needs_write(&engine.spec().properties[1]));
    }

    #[test]
    fn exceptions_affect_only_their_request() {
        let mut engine = engine(
            r#"{"name":"a","type":"int16","visitor":{"register":"HoldingRegister","offset":99}},
               {"name":"b","type":"int16","visitor":{"register":"InputRegister","offset":150}},
               {"name":"c","type":"int16","visitor":{"register":"InputRegister","offset":1}}"#,
        );
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.input[1] = 7;
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(outcome.failure, None);
        assert_eq!(
            property(&outcome, "b")["error"],
            "read failed: illegal data address (exception 2)"
        );
        assert_eq!(property(&outcome, "c")["value"], "7");
        assert_eq!(property(&outcome, "a")["value"], "0");
    }

    #[test]
    fn a_merged_read_over_a_missing_address_falls_back_to_single_reads() {
        let mut engine = engine(
            r#"{"name":"a","type":"int16","visitor":{"register":"HoldingRegister","offset":0}},
               {"name":"b","type":"int16","visitor":{"register":"HoldingRegister","offset":4}}"#,
        );
        assert_eq!(engine.batch_count(), 1);
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.holes = vec![2];
        slave.holding[4] = 4;
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(
            slave.take(),
            [
                read(Table::Holding, 0, 5),
                read(Table::Holding, 0, 1),
                read(Table::Holding, 4, 1)
            ]
        );
        assert_eq!(property(&outcome, "b")["value"], "4");
        assert!(property(&outcome, "a").get("error").is_none());
        engine.poll(&mut memory, &mut slave, "T2");
        assert_eq!(
            slave.take(),
            [read(Table::Holding, 0, 1), read(Table::Holding, 4, 1)],
            "the split is remembered"
        );
    }

    #[test]
    fn gateway_exceptions_mean_the_device_is_unreachable() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        memory.record_write(&engine.spec().properties[1]);
        let mut slave = Slave::new();
        slave.down = Some(BusError::Exception(Exception(11)));
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        let Some(Failure::Unreachable(message)) = &outcome.failure else {
            panic!("unreachable expected")
        };
        assert!(message.contains("workerID"), "{message}");
        assert_eq!(
            property(&outcome, "alarm")["error"],
            "read failed: gateway target device failed to respond (exception 11)"
        );
    }

    #[test]
    fn denied_capabilities_stop_the_poll() {
        let mut engine = engine(THERMOMETER);
        let mut memory = Memory::default();
        memory.record_write(&engine.spec().properties[1]);
        let mut slave = Slave::new();
        slave.down = Some(BusError::Denied("no grant protocol.tcp.endpoint".into()));
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert!(matches!(outcome.failure, Some(Failure::Denied(_))));
        assert_eq!(
            property(&outcome, "serial")["error"],
            "not read: access refused"
        );
    }

    #[test]
    fn restored_memory_rewrites_nothing() {
        let mut slave = Slave::new();
        let mut old = engine(THERMOMETER);
        let mut memory = Memory::default();
        old.poll(&mut memory, &mut slave, "T1");
        slave.take();
        let bytes = memory.to_snapshot("0.1.0").to_string().into_bytes();
        let mut restored = Memory::from_snapshot(&bytes).unwrap();
        let mut new = engine(THERMOMETER);
        restored.retain_for(&new.spec().properties);
        let outcome = new.poll(&mut restored, &mut slave, "T2");
        assert!(
            slave
                .take()
                .iter()
                .all(|r| matches!(r, Request::Read { .. }))
        );
        assert_eq!(property(&outcome, "limitation")["value"], "30");
    }

    #[test]
    fn coils_and_wide_values() {
        let mut engine = engine(
            r#"{"name":"leds","type":"hexString","value":"0d03",
                "visitor":{"register":"CoilRegister","offset":0,"quantity":10}},
               {"name":"energy","type":"uint64","readOnly":true,
                "visitor":{"register":"InputRegister","offset":20,"quantity":4,"endianness":"LittleEndian",
                           "orderOfOperations":[{"type":"Multiply","value":"2"}]}}"#,
        );
        let mut memory = Memory::default();
        let mut slave = Slave::new();
        slave.input[20..24].copy_from_slice(&[0x0001, 0x0000, 0x0000, 0x0000]);
        let outcome = engine.poll(&mut memory, &mut slave, "T1");
        assert_eq!(property(&outcome, "leds")["value"], "0d03");
        assert_eq!(property(&outcome, "energy")["value"], "1");
        assert_eq!(property(&outcome, "energy")["operatedValue"], "2.000000");
        assert_eq!(
            slave.coils[..10],
            [
                true, false, true, true, false, false, false, false, true, true
            ]
        );
    }

    #[test]
    fn status_strings_are_escaped_as_json() {
        for text in [
            "plain",
            "",
            "quote \" and \\ back",
            "line\nbreak\r\ttab",
            "\u{1}\u{1f} ctl",
            "ünï 温度 🌡",
        ] {
            let mut out = String::new();
            json_string(&mut out, text);
            let parsed: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed, text, "{out}");
        }
    }
}
