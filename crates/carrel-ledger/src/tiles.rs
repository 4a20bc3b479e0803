//! Hash tiles in the style of C2SP `tlog-tiles`: the Merkle tree's node hashes stored in
//! rows of at most 256, so that a proof reads O(log n) rows instead of every leaf hash.
//!
//! The tile at level `L` and index `t` contains, in order, the hashes of the perfect
//! subtrees of 2^(8L) leaves numbered `256t` to `256t + 255`. Level 0 contains leaf hashes.
//! The rightmost tile of a level is partial while fewer than 256 of its subtrees are
//! complete. It contains the complete ones and grows as entries arrive. A perfect subtree of
//! 2^(8L + r) leaves with `0 < r < 8` is not stored: its hash is computed from 2^r
//! consecutive hashes of one level-`L` tile.
//!
//! A stored tile never changes once it is full, and a partial tile only grows, so the tiles
//! of the current log also serve proofs for every smaller tree size.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::{LedgerError, Result};
use crate::merkle::{Hash, node_hash};

/// Tree levels per tile, so a full tile contains 2^8 hashes.
const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// The table of tiles, created by `AuditLog::create_schema`.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_tiles (
    level INTEGER NOT NULL CHECK (level >= 0),
    idx INTEGER NOT NULL CHECK (idx >= 0),
    hashes BLOB NOT NULL
        CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (level, idx)
) STRICT;
";

/// One tile: its level, its index within the level and its hashes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile<'a> {
    pub(crate) level: u32,
    pub(crate) index: u64,
    pub(crate) hashes: &'a [Hash],
}

impl Tile<'_> {
    /// Returns the index of the first leaf under the tile's hash at `offset`.
    fn first_leaf(&self, offset: usize) -> u64 {
        let position = self.index * TILE_WIDTH as u64 + offset as u64;
        // A level-7 tile shifts by 56 bits and loses nothing, because fewer than 2^64 leaves
        // give it fewer than 256 positions.
        position << (TILE_HEIGHT * self.level)
    }
}

/// The right edge of the tiled tree: at each level, the hashes of the partial tile that is
/// still being filled. Pushing leaf hashes completes tiles from the bottom up.
#[derive(Debug, Default)]
pub(crate) struct TileEdge {
    size: u64,
    /// `partial[L]` contains the fewer than 256 hashes of the rightmost level-`L` tile.
    partial: Vec<Vec<Hash>>,
}

impl TileEdge {
    /// Creates the edge of the empty tree.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Returns the number of leaves pushed or loaded.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Reads the partial tiles of a stored log of `size` leaves, one row per level.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Tampered`] if a partial tile is missing or its width does not fit
    /// `size`, and [`LedgerError::Sqlite`] if the database fails.
    pub(crate) fn load(conn: &Connection, size: u64) -> Result<Self> {
        let mut partial = Vec::new();
        let mut level = 0;
        while hashes_at_level(size, level) > 0 {
            let count = hashes_at_level(size, level);
            let width = (count % TILE_WIDTH as u64) as usize;
            let index = count / TILE_WIDTH as u64;
            let mut hashes = Vec::with_capacity(TILE_WIDTH);
            if width > 0 {
                let stored = read_tile(conn, level, index)?.unwrap_or_default();
                if stored.len() != width {
                    let what = "stored partial tile does not fit the tree size";
                    return Err(LedgerError::Tampered { what, index: size });
                }
                hashes.extend(stored);
            }
            partial.push(hashes);
            level += 1;
        }
        Ok(Self { size, partial })
    }

    /// Appends a leaf hash and calls `on_full` with every tile that the leaf completes,
    /// bottom up. After an error the edge is no longer usable.
    pub(crate) fn push(
        &mut self,
        leaf_hash: Hash,
        mut on_full: impl FnMut(Tile<'_>) -> Result<()>,
    ) -> Result<()> {
        let size = self.size + 1;
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.partial.len() == level as usize {
                self.partial.push(Vec::with_capacity(TILE_WIDTH));
            }
            let hashes = &mut self.partial[level as usize];
            hashes.push(hash);
            if hashes.len() < TILE_WIDTH {
                break;
            }
            let index = hashes_at_level(size, level) / TILE_WIDTH as u64 - 1;
            on_full(Tile {
                level,
                index,
                hashes,
            })?;
            hash = perfect_root(hashes);
            hashes.clear();
            level += 1;
        }
        self.size = size;
        Ok(())
    }

    /// Returns the partial tiles that contain at least one hash, lowest level first.
    pub(crate) fn partial_tiles(&self) -> impl Iterator<Item = Tile<'_>> {
        self.partial
            .iter()
            .zip(0..)
            .filter(|(hashes, _)| !hashes.is_empty())
            .map(|(hashes, level)| Tile {
                level,
                index: hashes_at_level(self.size, level) / TILE_WIDTH as u64,
                hashes,
            })
    }

    /// Writes the partial tiles that gained a hash since the tree had `old_size` leaves.
    /// Tiles completed meanwhile were handed to `on_full` by [`TileEdge::push`].
    pub(crate) fn write_partial_since(&self, conn: &Connection, old_size: u64) -> Result<()> {
        for tile in self.partial_tiles() {
            if hashes_at_level(old_size, tile.level) != hashes_at_level(self.size, tile.level) {
                write_tile(conn, tile)?;
            }
        }
        Ok(())
    }
}

/// Stores a tile, replacing the shorter version of it that may be stored.
pub(crate) fn write_tile(conn: &Connection, tile: Tile<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_tiles (level, idx, hashes) VALUES (?1, ?2, ?3)
         ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
    )?
    .execute(params![
        tile.level,
        to_sql(tile.index),
        tile.hashes.as_flattened()
    ])?;
    Ok(())
}

/// Reads a tile, or `None` if no row is stored for it.
fn read_tile(conn: &Connection, level: u32, index: u64) -> Result<Option<Vec<Hash>>> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hashes FROM audit_tiles WHERE level = ?1 AND idx = ?2")?
        .query_row(params![level, to_sql(index)], |row| row.get(0))
        .optional()?;
    // The table's CHECK constraint keeps the length a multiple of 32.
    Ok(blob.map(|blob| blob.as_chunks::<32>().0.to_vec()))
}

/// Fills `audit_tiles` from the leaf hashes in `audit_entries`, in one pass in index
/// order. It upgrades a log stored before tiles existed.
///
/// # Errors
///
/// [`LedgerError::Tampered`] if the entry indexes do not run from 0 without gaps, and
/// [`LedgerError::Sqlite`] if the database fails.
pub(crate) fn fill_from_leaf_hashes(conn: &Connection) -> Result<()> {
    let mut edge = TileEdge::new();
    let mut statement = conn.prepare("SELECT idx, leaf_hash FROM audit_entries ORDER BY idx")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let stored_index: i64 = row.get(0)?;
        if u64::try_from(stored_index).ok() != Some(edge.size()) {
            let what = "entry index missing from the sequence";
            return Err(LedgerError::Tampered {
                what,
                index: edge.size(),
            });
        }
        // The table's CHECK constraint keeps leaf hashes at 32 bytes.
        let leaf_hash: Hash = row.get(1)?;
        edge.push(leaf_hash, |tile| write_tile(conn, tile))?;
    }
    edge.write_partial_since(conn, 0)
}

/// Checks that the stored tile equals `expected`, a tile that
/// [`crate::AuditLog::verify`] rebuilt from the entries.
///
/// # Errors
///
/// [`LedgerError::Tampered`] naming the first leaf under the first hash that differs or is
/// missing, and [`LedgerError::Sqlite`] if the database fails.
pub(crate) fn check_tile(conn: &Connection, expected: Tile<'_>) -> Result<()> {
    let stored = read_tile(conn, expected.level, expected.index)?.unwrap_or_default();
    let differs = expected
        .hashes
        .iter()
        .zip(&stored)
        .position(|(expected, stored)| expected != stored);
    let offset = match differs {
        Some(offset) => offset,
        None if stored.len() == expected.hashes.len() => return Ok(()),
        None => stored.len().min(expected.hashes.len()),
    };
    let what = "stored tile differs from the tree rebuilt from the entries";
    Err(LedgerError::Tampered {
        what,
        index: expected.first_leaf(offset),
    })
}

/// Checks that the number of stored tiles is that of a tree of `size` leaves, so that no
/// tile is stored beyond the log.
///
/// # Errors
///
/// [`LedgerError::Tampered`] at `size` if the count differs, and [`LedgerError::Sqlite`]
/// if the database fails.
pub(crate) fn check_tile_count(conn: &Connection, size: u64) -> Result<()> {
    let stored: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM audit_tiles")?
        .query_row([], |row| row.get(0))?;
    let expected: u64 = (0..)
        .map(|level| hashes_at_level(size, level))
        .take_while(|&count| count > 0)
        .map(|count| count.div_ceil(TILE_WIDTH as u64))
        .sum();
    if u64::try_from(stored).ok() != Some(expected) {
        let what = "stored tiles do not fit the tree size";
        return Err(LedgerError::Tampered { what, index: size });
    }
    Ok(())
}

/// Reads node hashes of the tree of the first `tree_size` leaves from stored tiles. It
/// keeps the tiles it read, so one proof reads each tile once.
pub(crate) struct TileReader<'c> {
    conn: &'c Connection,
    tree_size: u64,
    tiles: HashMap<(u32, u64), Vec<Hash>>,
}

impl<'c> TileReader<'c> {
    /// Creates a reader for a tree size that the caller checked against the log's size.
    pub(crate) fn new(conn: &'c Connection, tree_size: u64) -> Self {
        Self {
            conn,
            tree_size,
            tiles: HashMap::new(),
        }
    }

    /// Builds the RFC 9162 inclusion proof of the leaf at `index < tree_size`.
    pub(crate) fn inclusion_proof(&mut self, index: u64) -> Result<Vec<Hash>> {
        let mut proof = Vec::new();
        self.audit_path(index, 0, self.tree_size, &mut proof)?;
        Ok(proof)
    }

    /// Builds the RFC 9162 consistency proof from `old_size <= tree_size` leaves.
    pub(crate) fn consistency_proof(&mut self, old_size: u64) -> Result<Vec<Hash>> {
        let mut proof = Vec::new();
        if old_size > 0 {
            self.subproof(old_size, 0, self.tree_size, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// RFC 9162 `PATH(index, D[start:end])`, appended to `out` from the bottom up. It
    /// follows `merkle::inclusion_proof` on index ranges instead of slices.
    fn audit_path(&mut self, index: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<()> {
        if end - start <= 1 {
            return Ok(());
        }
        let middle = start + split_point(end - start);
        if index < middle {
            self.audit_path(index, start, middle, out)?;
            out.push(self.range_root(middle, end)?);
        } else {
            self.audit_path(index, middle, end, out)?;
            out.push(self.range_root(start, middle)?);
        }
        Ok(())
    }

    /// RFC 9162 `SUBPROOF(old_end - start, D[start:end], complete)`, appended to `out` from
    /// the bottom up. It follows `merkle::consistency_proof` on index ranges.
    fn subproof(
        &mut self,
        old_end: u64,
        start: u64,
        end: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<()> {
        if old_end == end {
            if !complete {
                out.push(self.range_root(start, end)?);
            }
            return Ok(());
        }
        let middle = start + split_point(end - start);
        if old_end <= middle {
            self.subproof(old_end, start, middle, complete, out)?;
            out.push(self.range_root(middle, end)?);
        } else {
            self.subproof(old_end, middle, end, false, out)?;
            out.push(self.range_root(start, middle)?);
        }
        Ok(())
    }

    /// Computes the Merkle tree hash of the leaves `start..end` of a subtree that the RFC
    /// 9162 recursion visits.
    ///
    /// Such a range starts at a multiple of the smallest power of two that is at least its
    /// length, so it splits into perfect subtrees of decreasing size, one per set bit of
    /// the length. Its hash folds their hashes from the right.
    fn range_root(&mut self, start: u64, end: u64) -> Result<Hash> {
        let mut roots = Vec::new();
        let mut at = start;
        while at < end {
            let height = (end - at).ilog2();
            debug_assert_eq!(at % (1 << height), 0, "subtree start is aligned");
            roots.push(self.perfect_node(height, at >> height)?);
            at += 1 << height;
        }
        let last = roots.pop().expect("a range of at least one leaf");
        Ok(roots
            .iter()
            .rev()
            .fold(last, |right, left| node_hash(left, &right)))
    }

    /// Computes the hash of the perfect subtree of 2^`height` leaves that starts at leaf
    /// `index << height`, from 2^(`height` mod 8) hashes of one tile.
    fn perfect_node(&mut self, height: u32, index: u64) -> Result<Hash> {
        let level = height / TILE_HEIGHT;
        let span = 1usize << (height % TILE_HEIGHT);
        let first = index << (height % TILE_HEIGHT);
        let offset = (first % TILE_WIDTH as u64) as usize;
        let hashes = self.tile(level, first / TILE_WIDTH as u64, offset + span)?;
        Ok(perfect_root(&hashes[offset..offset + span]))
    }

    /// Returns the stored tile, which must hold at least `needed` hashes.
    fn tile(&mut self, level: u32, index: u64, needed: usize) -> Result<&[Hash]> {
        let hashes = match self.tiles.entry((level, index)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let stored = read_tile(self.conn, level, index)?.unwrap_or_default();
                entry.insert(stored)
            }
        };
        if hashes.len() < needed {
            let what = "stored tile is shorter than the tree size requires";
            let tile = Tile {
                level,
                index,
                hashes,
            };
            return Err(LedgerError::Tampered {
                what,
                index: tile.first_leaf(hashes.len()),
            });
        }
        Ok(hashes.as_slice())
    }
}

/// Computes the root of a perfect tree from its 2^k leaf or node hashes, k >= 0.
fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

/// Returns the number of hashes stored at `level` for a tree of `size` leaves: one per
/// complete subtree of 2^(8 × `level`) leaves.
fn hashes_at_level(size: u64, level: u32) -> u64 {
    size.checked_shr(TILE_HEIGHT * level).unwrap_or(0)
}

/// Returns the largest power of two strictly below `n`, for `n >= 2`.
fn split_point(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

/// Converts an index to SQLite's integer. Tile indexes are at most 2^56.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
