//! Grouping of property reads into as few requests as possible.
//!
//! Every request costs a round trip (and on a shared RS-485 bus, bus time other devices
//! wait for), so properties of the same table whose ranges overlap, touch or lie a few
//! items apart are read together, within the protocol's per-request limits.

use crate::codec::Table;

/// Largest hole between two ranges of 16-bit registers that is still read over.
pub const REGISTER_GAP: u16 = 8;
/// Largest hole between two ranges of bits that is still read over.
pub const BIT_GAP: u16 = 16;

/// The items one property occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub table: Table,
    pub start: u16,
    pub count: u16,
}

impl Span {
    fn end(self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// One read request and the properties (by index) it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub span: Span,
    pub members: Vec<usize>,
}

fn gap(table: Table) -> u32 {
    u32::from(if table.is_bits() {
        BIT_GAP
    } else {
        REGISTER_GAP
    })
}

/// Groups `spans` (one per property, indexed by position) into batches, ordered by
/// table and address. A span larger than the table's limit gets a batch of its own
/// (the spec refuses those, so this is only a guard).
pub fn plan(spans: &[Span]) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].table, spans[i].start, spans[i].end()));
    let mut batches: Vec<Batch> = Vec::new();
    for i in order {
        let span = spans[i];
        if let Some(batch) = batches.last_mut() {
            let current = batch.span;
            let end = current.end().max(span.end());
            let fits = u32::from(span.start) <= current.end() + gap(span.table)
                && end - u32::from(current.start) <= u32::from(span.table.read_limit());
            if current.table == span.table && fits {
                batch.span.count =
                    u16::try_from(end - u32::from(current.start)).unwrap_or(current.count);
                batch.members.push(i);
                continue;
            }
        }
        batches.push(Batch {
            span,
            members: vec![i],
        });
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(table: Table, start: u16, count: u16) -> Span {
        Span {
            table,
            start,
            count,
        }
    }

    /// A batch as (table, start, count, members).
    type Row = (Table, u16, u16, Vec<usize>);

    fn summary(batches: &[Batch]) -> Vec<Row> {
        batches
            .iter()
            .map(|b| (b.span.table, b.span.start, b.span.count, b.members.clone()))
            .collect()
    }

    #[test]
    fn grouping_table() {
        use Table::*;
        let cases: Vec<(&str, Vec<Span>, Vec<Row>)> = vec![
            ("nothing", vec![], vec![]),
            (
                "adjacent",
                vec![span(Holding, 0, 2), span(Holding, 2, 1)],
                vec![(Holding, 0, 3, vec![0, 1])],
            ),
            (
                "overlapping and unsorted",
                vec![span(Holding, 4, 4), span(Holding, 0, 6)],
                vec![(Holding, 0, 8, vec![1, 0])],
            ),
            (
                "contained",
                vec![span(Input, 0, 10), span(Input, 3, 1)],
                vec![(Input, 0, 10, vec![0, 1])],
            ),
            (
                "gap of 8 registers is read over",
                vec![span(Holding, 0, 1), span(Holding, 9, 1)],
                vec![(Holding, 0, 10, vec![0, 1])],
            ),
            (
                "gap of 9 registers splits",
                vec![span(Holding, 0, 1), span(Holding, 10, 1)],
                vec![(Holding, 0, 1, vec![0]), (Holding, 10, 1, vec![1])],
            ),
            (
                "gap of 16 bits is read over",
                vec![span(Coil, 0, 1), span(Coil, 17, 1)],
                vec![(Coil, 0, 18, vec![0, 1])],
            ),
            (
                "gap of 17 bits splits",
                vec![span(Coil, 0, 1), span(Coil, 18, 1)],
                vec![(Coil, 0, 1, vec![0]), (Coil, 18, 1, vec![1])],
            ),
            (
                "tables never mix and come in table order",
                vec![
                    span(Holding, 0, 1),
                    span(Input, 0, 1),
                    span(Coil, 0, 1),
                    span(DiscreteInput, 1, 1),
                ],
                vec![
                    (Coil, 0, 1, vec![2]),
                    (DiscreteInput, 1, 1, vec![3]),
                    (Input, 0, 1, vec![1]),
                    (Holding, 0, 1, vec![0]),
                ],
            ),
            (
                "same address twice",
                vec![span(Holding, 7, 2), span(Holding, 7, 2)],
                vec![(Holding, 7, 2, vec![0, 1])],
            ),
            (
                "top of the address space",
                vec![span(Holding, 65_534, 2), span(Holding, 65_530, 2)],
                vec![(Holding, 65_530, 6, vec![1, 0])],
            ),
        ];
        for (name, spans, expected) in cases {
            assert_eq!(summary(&plan(&spans)), expected, "{name}");
        }
    }

    #[test]
    fn register_batches_stay_within_125() {
        let spans: Vec<Span> = (0..100).map(|i| span(Table::Holding, i * 2, 2)).collect();
        let batches = plan(&spans);
        assert_eq!(
            summary(&batches)
                .iter()
                .map(|b| (b.1, b.2))
                .collect::<Vec<_>>(),
            [(0, 124), (124, 76)]
        );
        assert_eq!(batches[0].members.len(), 62);
        assert!(batches.iter().all(|b| b.span.count <= 125));
        let exact = plan(&[span(Table::Input, 0, 100), span(Table::Input, 100, 25)]);
        assert_eq!(summary(&exact), [(Table::Input, 0, 125, vec![0, 1])]);
        let over = plan(&[span(Table::Input, 0, 100), span(Table::Input, 100, 26)]);
        assert_eq!(over.len(), 2);
    }

    #[test]
    fn bit_batches_stay_within_2000() {
        let fits = plan(&[span(Table::Coil, 0, 1000), span(Table::Coil, 1000, 1000)]);
        assert_eq!(summary(&fits), [(Table::Coil, 0, 2000, vec![0, 1])]);
        let over = plan(&[span(Table::Coil, 0, 1000), span(Table::Coil, 1001, 1000)]);
        assert_eq!(over.len(), 2);
    }
}
