//! RFC 6962 Merkle tree hashing and proofs, without I/O.
//!
//! Guarantee: if SHA-256 is collision resistant, a root commits to exactly one ordered list
//! of leaves. An inclusion proof that verifies shows that a leaf is at that index in the
//! list behind a root. A consistency proof that verifies shows that the list behind the old
//! root is a prefix of the list behind the new one. Leaf and node hashes carry distinct
//! prefixes (`0x00`, `0x01`), so a leaf cannot pass for an inner node.
//!
//! Proofs come from a peer and are untrusted: every check returns an error rather than
//! panicking, and a proof of the wrong length is rejected before any root comparison. The
//! algorithms are those of RFC 9162 sections 2.1.3 and 2.1.4; `NOTES.md` in this folder
//! explains the construction.

use sha2::{Digest, Sha256};

use crate::error::{LedgerError, Result};

/// A SHA-256 digest: a leaf hash, an inner node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hashes a leaf: SHA-256(`0x00` ‖ `data`).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// Hashes an inner node: SHA-256(`0x01` ‖ `left` ‖ `right`).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Computes the Merkle tree hash (RFC 6962 `MTH`) of a list of leaf hashes.
///
/// The empty list has [`EMPTY_ROOT`].
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            let (left, right) = leaf_hashes.split_at(split_point(leaf_hashes.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// Builds the audit path for the leaf at `index` in the tree of the first `tree_size`
/// leaves, ordered from the leaf's sibling up to the root's child.
///
/// # Errors
///
/// [`LedgerError::TreeSizeOutOfRange`] if `tree_size` exceeds the leaves given, and
/// [`LedgerError::IndexOutOfRange`] if `index >= tree_size`.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64, tree_size: u64) -> Result<Vec<Hash>> {
    let leaves = prefix(leaf_hashes, tree_size)?;
    if index >= tree_size {
        return Err(LedgerError::IndexOutOfRange { index, tree_size });
    }
    let mut proof = Vec::new();
    // The index is below `tree_size`, which fits in memory as a slice length.
    audit_path(to_usize(index), leaves, &mut proof);
    Ok(proof)
}

/// Checks that `leaf_hash` is at `index` in the tree of size `tree_size` with `root`.
///
/// # Security
///
/// The proof binds the leaf to the root along a path of a given shape, and trees of
/// different sizes can share that shape (leaf 0 of a 3-leaf and of a 4-leaf tree both go
/// right, right). Take `tree_size` together with `root` from a verified checkpoint, never
/// from the party that supplies the proof. The same holds for [`verify_consistency`].
///
/// # Errors
///
/// [`LedgerError::IndexOutOfRange`] if `index >= tree_size`, and
/// [`LedgerError::InvalidProof`] if the proof does not lead to `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    if index >= tree_size {
        return Err(LedgerError::IndexOutOfRange { index, tree_size });
    }

    // `node` walks up from the leaf; `last` is the index of the right edge at that level.
    let (mut node, mut last) = (index, tree_size - 1);
    let mut hash = *leaf_hash;
    for sibling in proof {
        if last == 0 {
            return Err(invalid_proof("proof is longer than the tree is deep"));
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            // A right-edge node with no right sibling rises without hashing.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }

    if last != 0 {
        return Err(invalid_proof("proof is shorter than the tree is deep"));
    }
    if hash != *root {
        return Err(invalid_proof(
            "computed root differs from the expected root",
        ));
    }
    Ok(())
}

/// Builds the proof that the tree of the first `old_size` leaves is a prefix of the tree
/// of the first `new_size` leaves (RFC 9162 `PROOF`).
///
/// It is empty when `old_size` is 0 or equals `new_size`.
///
/// # Errors
///
/// [`LedgerError::TreeSizeOutOfRange`] if `new_size` exceeds the leaves given, and
/// [`LedgerError::OldSizeExceedsNew`] if `old_size > new_size`.
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
    let leaves = prefix(leaf_hashes, new_size)?;
    if old_size > new_size {
        return Err(LedgerError::OldSizeExceedsNew { old_size, new_size });
    }
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof(to_usize(old_size), leaves, true, &mut proof);
    }
    Ok(proof)
}

/// Checks that the tree with `old_root` at `old_size` is a prefix of the tree with
/// `new_root` at `new_size`.
///
/// A proof from size 0 must be empty and `old_root` must then be [`EMPTY_ROOT`]; between
/// equal sizes the proof must be empty and the roots equal.
///
/// # Errors
///
/// [`LedgerError::OldSizeExceedsNew`] if `old_size > new_size`, and
/// [`LedgerError::InvalidProof`] if the proof does not link the two roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    if old_size > new_size {
        return Err(LedgerError::OldSizeExceedsNew { old_size, new_size });
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(invalid_proof("a proof from the empty tree must be empty"));
        }
        if *old_root != EMPTY_ROOT {
            return Err(invalid_proof(
                "the root of the empty tree is not the empty hash",
            ));
        }
        return Ok(());
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(invalid_proof("a proof between equal sizes must be empty"));
        }
        if old_root != new_root {
            return Err(invalid_proof("roots differ at the same tree size"));
        }
        return Ok(());
    }

    // A perfect old tree is itself a node of the new tree, so its root starts the walk.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return Err(invalid_proof("proof is empty")),
        }
    };
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }

    // `old_hash` rebuilds the old root and `new_hash` the new one from the same path.
    let (mut old_hash, mut new_hash) = (*seed, *seed);
    for hash in rest {
        if last == 0 {
            return Err(invalid_proof("proof is longer than the tree is deep"));
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(hash, &old_hash);
            new_hash = node_hash(hash, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, hash);
        }
        node >>= 1;
        last >>= 1;
    }

    if last != 0 {
        return Err(invalid_proof("proof is shorter than the tree is deep"));
    }
    if old_hash != *old_root || new_hash != *new_root {
        return Err(invalid_proof(
            "computed roots differ from the expected roots",
        ));
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of the perfect subtrees that its leaves
/// decompose into, largest first. It appends a leaf and yields the root in O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One root per set bit of `size`, from the highest bit to the lowest.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// Creates the frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its parts, or `None` if `nodes` does not hold one hash per
    /// set bit of `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// Returns the number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the perfect-subtree roots, largest subtree first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf, merging the equal-sized subtrees at the right edge.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut size = self.size;
        while size & 1 == 1 {
            // A set low bit of `size` means a subtree root is on the stack for it.
            let left = self.nodes.pop().expect("one node per set bit of size");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// Computes the Merkle tree hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return EMPTY_ROOT;
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// RFC 9162 `PATH(m, D[n])`, appended to `out` from the bottom up.
fn audit_path(index: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    if index < left.len() {
        audit_path(index, left, out);
        out.push(root(right));
    } else {
        audit_path(index - left.len(), right, out);
        out.push(root(left));
    }
}

/// RFC 9162 `SUBPROOF(m, D[n], b)`, appended to `out` from the bottom up.
fn subproof(old_size: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    if old_size == leaves.len() {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    if old_size <= left.len() {
        subproof(old_size, left, complete, out);
        out.push(root(right));
    } else {
        subproof(old_size - left.len(), right, false, out);
        out.push(root(left));
    }
}

/// Returns the largest power of two strictly below `n`, for `n >= 2`.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Returns the first `tree_size` leaf hashes, or an error if there are fewer.
fn prefix(leaf_hashes: &[Hash], tree_size: u64) -> Result<&[Hash]> {
    let available = leaf_hashes.len() as u64;
    if tree_size > available {
        return Err(LedgerError::TreeSizeOutOfRange {
            requested: tree_size,
            available,
        });
    }
    Ok(&leaf_hashes[..to_usize(tree_size)])
}

/// Converts a value already checked against a slice length.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("checked against a slice length")
}

fn invalid_proof(reason: &'static str) -> LedgerError {
    LedgerError::InvalidProof { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(data: &[&str]) -> Vec<Hash> {
        data.iter().map(|d| leaf_hash(d.as_bytes())).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let digest: Hash = Sha256::digest([]).into();
        assert_eq!(EMPTY_ROOT, digest);
        assert_eq!(root(&[]), EMPTY_ROOT);
        assert_eq!(Frontier::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        let cases = [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (300, 256)];
        for (n, k) in cases {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn duplicated_last_leaf_changes_root() {
        // A tree that padded odd levels by duplication would give these the same root.
        assert_ne!(
            root(&leaves(&["a", "b", "c"])),
            root(&leaves(&["a", "b", "c", "c"]))
        );
    }

    #[test]
    fn frontier_root_matches_recursive_root() {
        let mut frontier = Frontier::new();
        let mut all = Vec::new();
        for i in 0..70u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            frontier.push(leaf);
            all.push(leaf);
            assert_eq!(frontier.root(), root(&all), "size {}", all.len());
            assert_eq!(frontier.nodes().len(), all.len().count_ones() as usize);
        }
    }

    #[test]
    fn frontier_rejects_wrong_node_count() {
        assert!(Frontier::from_parts(3, vec![EMPTY_ROOT]).is_none());
        assert!(Frontier::from_parts(3, vec![EMPTY_ROOT; 2]).is_some());
    }
}
