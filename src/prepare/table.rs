//! [`Table`]: a complete export in column order, kept compact.
//!
//! A million-row export is the largest thing a host hands the engine, and it is held
//! beside the store for the whole import, so its form counts: the cells of a row sit
//! in one text buffer, each cell's length is a byte (once a cell is 256 bytes or
//! longer: its end relative to its row, in two bytes, four past 64 KiB), and a column
//! whose values repeat (a title, a department, a country) keeps each distinct value
//! once and a two-byte number per cell. A column
//! decides for itself: it looks its cells up while most are found, and stops looking
//! (its later cells are kept in the row's text) once most are not, so a column of
//! unique values (an id, a mail address) costs a look-up for its first rows only.
//!
//! The form is private: [`Table::cell`] gives every cell back as it was pushed, and
//! equality, cloning and the JSON form are those of the cells.

use indexmap::IndexSet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A complete export in column order: the column list and, per row, one text cell per
/// column (no allocation per row or cell; repeated values of a column kept once).
///
/// Serialized as `{"columns": [...], "rows": [[...], ...]}`.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<String>,
    /// The text of every cell not kept in its column's values, row after row.
    text: String,
    rows: Vec<RowStart>,
    /// Per cell, row after row: the end of the row's text up to and including it
    /// (relative to the row's start; a kept cell adds nothing).
    ends: Ends,
    /// Per kept cell, row after row: its number among its column's values.
    refs: Vec<u16>,
    /// Per column (the first [`KEPT_COLUMNS`]), its repeated values.
    kept: Vec<Kept>,
}

/// Where a row starts in the table's lists, and which of its cells are kept values.
#[derive(Debug, Clone, Copy, Default)]
struct RowStart {
    text: u32,
    refs: u32,
    /// Bit `c`: the cell of column `c` is a kept value.
    kept: u64,
}

/// Where each cell's text is within its row: one byte per cell, its length, while
/// every cell is shorter than 256 bytes; then the end of the row's text up to and
/// including each cell (relative to the row's start), two bytes each while every row's
/// text fits, else four.
#[derive(Debug, Clone)]
enum Ends {
    Lengths(Vec<u8>),
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Default for Ends {
    fn default() -> Self {
        Ends::Lengths(Vec::new())
    }
}

impl Ends {
    /// The start and end, within its row's text, of the cell at `first + column` (the
    /// row's cells start at `first`).
    fn span(&self, first: usize, column: usize) -> Option<(usize, usize)> {
        let index = first.checked_add(column)?;
        match self {
            Ends::Lengths(lengths) => {
                let before = lengths.get(first..index)?;
                let start = before.iter().map(|&l| usize::from(l)).sum();
                Some((start, start + usize::from(*lengths.get(index)?)))
            }
            Ends::Narrow(ends) => {
                let end = usize::from(*ends.get(index)?);
                let start = if column == 0 {
                    0
                } else {
                    usize::from(*ends.get(index - 1)?)
                };
                Some((start, end))
            }
            Ends::Wide(ends) => {
                let end = *ends.get(index)? as usize;
                let start = if column == 0 { 0 } else { *ends.get(index - 1)? as usize };
                Some((start, end))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Ends::Lengths(lengths) => lengths.len(),
            Ends::Narrow(ends) => ends.len(),
            Ends::Wide(ends) => ends.len(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Ends::Lengths(lengths) => lengths.truncate(len),
            Ends::Narrow(ends) => ends.truncate(len),
            Ends::Wide(ends) => ends.truncate(len),
        }
    }

    /// Appends a cell of `length` bytes ending at `end` in its row's text, changing to
    /// a wider form first when it does not fit (rows are `columns` cells each).
    fn push(&mut self, end: u32, length: usize, columns: usize) {
        if let Ends::Lengths(lengths) = self {
            match u8::try_from(length) {
                Ok(length) => return lengths.push(length),
                Err(_) => *self = Ends::running(lengths, columns),
            }
        }
        if let Ends::Narrow(ends) = self {
            match u16::try_from(end) {
                Ok(end) => return ends.push(end),
                Err(_) => {
                    let mut wide: Vec<u32> = Vec::with_capacity(ends.capacity().max(ends.len() + 1));
                    wide.extend(ends.iter().map(|&e| u32::from(e)));
                    *self = Ends::Wide(wide);
                }
            }
        }
        if let Ends::Wide(ends) = self {
            ends.push(end);
        }
    }

    /// Running ends per row from cell lengths: two bytes each if every row fits.
    fn running(lengths: &[u8], columns: usize) -> Ends {
        let mut ends: Vec<u32> = Vec::with_capacity(lengths.len() + 1);
        for row in lengths.chunks(columns.max(1)) {
            let mut end = 0u32;
            for &length in row {
                end += u32::from(length);
                ends.push(end);
            }
        }
        match ends.iter().map(|&e| u16::try_from(e)).collect::<Result<Vec<u16>, _>>() {
            Ok(narrow) => Ends::Narrow(narrow),
            Err(_) => Ends::Wide(ends),
        }
    }
}

/// The most columns whose values may be kept (a row's kept cells are bits of a `u64`).
const KEPT_COLUMNS: usize = 64;
/// The most values a column keeps (its numbers are `u16`).
const KEPT_VALUES: usize = u16::MAX as usize;
/// Longer cells are never kept: a long text rarely repeats.
const KEPT_LONGEST: usize = 64;
/// A column stops looking its cells up when, after a multiple of this many look-ups,
/// fewer than half of them found a value it kept.
const KEPT_TRIAL: u32 = 1024;

/// A column's repeated values.
#[derive(Debug, Clone, Default)]
struct Kept {
    /// Numbered by position.
    values: IndexSet<Box<str>, foldhash::fast::FixedState>,
    looked: u32,
    found: u32,
    /// The column has stopped looking its cells up.
    off: bool,
}

impl Kept {
    /// The number of `cell` among the kept values, keeping it when there is room;
    /// `None`: the cell goes to the row's text.
    fn number(&mut self, cell: &str) -> Option<u16> {
        if self.off || cell.len() > KEPT_LONGEST || cell.is_empty() {
            return None;
        }
        self.looked += 1;
        let number = match self.values.get_index_of(cell) {
            Some(at) => {
                self.found += 1;
                u16::try_from(at).ok()
            }
            None if self.values.len() < KEPT_VALUES => {
                let number = u16::try_from(self.values.len()).ok()?;
                self.values.insert(Box::from(cell));
                Some(number)
            }
            None => None,
        };
        if self.looked % KEPT_TRIAL == 0 && self.found.saturating_mul(2) < self.looked {
            self.off = true;
        }
        number
    }
}

/// Why a row could not be added to a [`Table`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The row does not have one cell per column.
    #[error("a row has {found} cells; the table has {expected} columns")]
    CellCount {
        /// The number of columns.
        expected: usize,
        /// The number of cells given.
        found: usize,
    },
    /// The table's text would exceed 4 GiB.
    #[error("the table's text would exceed 4 GiB")]
    TooLarge,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: Vec<String>) -> Table {
        let kept = vec![Kept::default(); columns.len().min(KEPT_COLUMNS)];
        Table {
            columns,
            kept,
            ..Table::default()
        }
    }

    /// An empty table with room for `rows` rows holding `text_bytes` bytes of cells
    /// (an upper bound: repeated values take less).
    pub fn with_capacity(columns: Vec<String>, rows: usize, text_bytes: usize) -> Table {
        let cells = rows.saturating_mul(columns.len());
        let mut table = Table::new(columns);
        table.text = String::with_capacity(text_bytes);
        table.rows = Vec::with_capacity(rows);
        table.ends = Ends::Lengths(Vec::with_capacity(cells));
        table
    }

    /// The column list.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends a row: exactly one cell per column, in column order. A refused row
    /// leaves the table as it was (a value a column kept for it stays kept, unused).
    pub fn push_row<I, S>(&mut self, cells: I) -> Result<(), TableError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (text_len, ends_len, refs_len) = (self.text.len(), self.ends.len(), self.refs.len());
        let undo = |table: &mut Table| {
            table.text.truncate(text_len);
            table.ends.truncate(ends_len);
            table.refs.truncate(refs_len);
        };
        let (Ok(text_start), Ok(refs_start)) = (u32::try_from(text_len), u32::try_from(refs_len)) else {
            return Err(TableError::TooLarge);
        };
        let mut start = RowStart {
            text: text_start,
            refs: refs_start,
            kept: 0,
        };
        let mut found = 0;
        for cell in cells {
            let column = found;
            found += 1;
            if column >= self.columns.len() {
                continue;
            }
            let cell = cell.as_ref();
            let length = match self.kept.get_mut(column).and_then(|kept| kept.number(cell)) {
                Some(number) => {
                    self.refs.push(number);
                    start.kept |= 1 << column;
                    0
                }
                None => {
                    self.text.push_str(cell);
                    cell.len()
                }
            };
            let end = self.text.len() - text_len;
            if u32::try_from(self.text.len()).is_err() {
                undo(self);
                return Err(TableError::TooLarge);
            }
            // Below 4 GiB (checked above).
            self.ends.push(end as u32, length, self.columns.len());
        }
        if found != self.columns.len() {
            undo(self);
            return Err(TableError::CellCount {
                expected: self.columns.len(),
                found,
            });
        }
        self.rows.push(start);
        Ok(())
    }

    /// The cell of a row and column (`None` out of range).
    pub fn cell(&self, row: usize, column: usize) -> Option<&str> {
        if column >= self.columns.len() {
            return None;
        }
        let start = self.rows.get(row)?;
        if column < KEPT_COLUMNS && start.kept >> column & 1 == 1 {
            let before = (start.kept & ((1u64 << column) - 1)).count_ones() as usize;
            let number = *self.refs.get(start.refs as usize + before)?;
            return self
                .kept
                .get(column)?
                .values
                .get_index(usize::from(number))
                .map(|v| &**v);
        }
        let (from, end) = self.ends.span(row.checked_mul(self.columns.len())?, column)?;
        let text = start.text as usize;
        self.text.get(text + from..text + end)
    }

    /// The cells of a row, in column order (empty when out of range).
    pub fn row(&self, row: usize) -> impl Iterator<Item = &str> + '_ {
        let columns = if row < self.rows.len() { self.columns.len() } else { 0 };
        (0..columns).filter_map(move |c| self.cell(row, c))
    }

    /// The equivalent rows of [`super::Snapshot::Complete`]: each column mapped to its
    /// cell as a JSON string.
    pub fn to_rows(&self) -> Vec<super::Row> {
        (0..self.rows.len())
            .map(|r| {
                self.columns
                    .iter()
                    .zip(self.row(r))
                    .map(|(c, v)| (c.clone(), serde_json::Value::String(v.to_owned())))
                    .collect()
            })
            .collect()
    }
}

/// Tables are equal when their columns and cells are (however their values are kept).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.columns == other.columns
            && self.rows.len() == other.rows.len()
            && (0..self.rows.len()).all(|r| self.row(r).eq(other.row(r)))
    }
}

impl Eq for Table {}

#[derive(Serialize)]
struct TableOut<'a> {
    columns: &'a [String],
    rows: Vec<Vec<&'a str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableIn {
    columns: Vec<String>,
    #[serde(default)]
    rows: Vec<Vec<String>>,
}

impl Serialize for Table {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TableOut {
            columns: &self.columns,
            rows: (0..self.rows.len()).map(|r| self.row(r).collect()).collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Table, D::Error> {
        let input = TableIn::deserialize(deserializer)?;
        let mut table = Table::new(input.columns);
        for row in &input.rows {
            table.push_row(row).map_err(serde::de::Error::custom)?;
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn columns(n: usize) -> Vec<String> {
        (0..n).map(|c| format!("c{c}")).collect()
    }

    proptest! {
        /// Whatever the cells (repeated, unique, empty, long, many columns), every cell
        /// reads back as pushed, and a refused row changes nothing.
        #[test]
        fn cells_read_back_as_pushed(
            (width, rows) in (1usize..70).prop_flat_map(|width| {
                let cell = prop_oneof![
                    3 => "[ab]{0,2}",
                    2 => "[a-z0-9]{0,12}",
                    1 => "x{60,70}",
                    1 => "y{250,300}",
                ];
                // Mostly rows of the table's width, a few of any other.
                let row = prop_oneof![
                    6 => proptest::collection::vec(cell.clone(), width..=width),
                    1 => proptest::collection::vec(cell, 0..75),
                ];
                (Just(width), proptest::collection::vec(row, 0..60))
            }),
            keep in proptest::bool::ANY,
        ) {
            let mut table = Table::new(columns(width));
            if !keep {
                // Every cell in the rows' text.
                table.kept.iter_mut().for_each(|k| k.off = true);
            }
            let mut pushed: Vec<Vec<String>> = Vec::new();
            for row in rows {
                let before = table.clone();
                match table.push_row(&row) {
                    Ok(()) => pushed.push(row),
                    Err(TableError::CellCount { expected, found }) => {
                        prop_assert_eq!((expected, found), (width, row.len()));
                        prop_assert_eq!(&table, &before);
                        prop_assert_eq!(table.len(), before.len());
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert_eq!(table.len(), pushed.len());
            for (r, row) in pushed.iter().enumerate() {
                let read: Vec<&str> = table.row(r).collect();
                prop_assert_eq!(&read, row);
                for (c, cell) in row.iter().enumerate() {
                    prop_assert_eq!(table.cell(r, c), Some(cell.as_str()));
                }
                prop_assert_eq!(table.cell(r, width), None);
            }
            prop_assert_eq!(table.cell(pushed.len(), 0), None);
        }
    }

    #[test]
    fn repeated_values_are_kept_once_and_unique_ones_stop_being_looked_up() {
        let mut table = Table::new(columns(2));
        for r in 0..5_000 {
            let department = ["Sales", "Legal", "IT"][r % 3];
            table.push_row([format!("id-{r:06}"), department.to_owned()]).unwrap();
        }
        let [id, department] = &table.kept[..] else {
            panic!("two columns")
        };
        assert_eq!(department.values.len(), 3);
        assert!(!department.off);
        assert!(id.off, "a column of unique values stops looking");
        assert_eq!(id.values.len(), KEPT_TRIAL as usize);
        // Only the ids after the trial are in the text.
        assert_eq!(table.text.len(), (5_000 - KEPT_TRIAL as usize) * "id-000000".len());
        assert_eq!(table.cell(4_999, 0), Some("id-004999"));
        assert_eq!(table.cell(4_999, 1), Some("Legal"));
        assert_eq!(table.cell(7, 0), Some("id-000007"));
    }

    #[test]
    fn long_cells_and_rows_widen_the_ends() {
        let mut table = Table::new(columns(3));
        table.kept.iter_mut().for_each(|k| k.off = true);
        let long = "y".repeat(40_000);
        let cell_300 = "w".repeat(300);
        table.push_row(["a", "b", "c"]).unwrap();
        assert!(matches!(table.ends, Ends::Lengths(_)));
        table.push_row(["p", cell_300.as_str(), "q"]).unwrap();
        assert!(matches!(table.ends, Ends::Narrow(_)));
        assert_eq!(table.row(0).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(table.row(1).collect::<Vec<_>>(), ["p", cell_300.as_str(), "q"]);
        table.push_row([long.as_str(), long.as_str(), "z"]).unwrap();
        table.push_row(["d", long.as_str(), "e"]).unwrap();
        assert!(matches!(table.ends, Ends::Wide(_)));
        assert_eq!(table.row(0).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(table.row(1).collect::<Vec<_>>(), ["p", cell_300.as_str(), "q"]);
        assert_eq!(table.row(2).collect::<Vec<_>>(), [long.as_str(), long.as_str(), "z"]);
        assert_eq!(table.row(3).collect::<Vec<_>>(), ["d", long.as_str(), "e"]);
    }

    #[test]
    fn equal_cells_make_equal_tables_however_they_are_kept() {
        let rows: Vec<[String; 1]> = (0..3000).map(|r| [format!("{}", r % 7)]).collect();
        let mut kept = Table::new(columns(1));
        let mut plain = Table::new(columns(1));
        // Every cell of `plain` in its text: its column has stopped looking.
        plain.kept[0].off = true;
        for row in &rows {
            kept.push_row(row).unwrap();
            plain.push_row(row).unwrap();
        }
        assert_eq!(kept, plain);
        assert!(kept.text.is_empty() && !plain.text.is_empty());
        plain.push_row(["x"]).unwrap();
        assert_ne!(kept, plain);
    }
}
