//! Merkle roots and proofs: fixed vectors, edge cases and properties.

use carrel_ledger::LedgerError;
use carrel_ledger::merkle::{
    EMPTY_ROOT, Frontier, Hash, consistency_proof, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

/// Eight leaves of growing length, the inputs RFC 6962 implementations commonly test with.
const LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// Roots of the first 1..=8 of [`LEAVES`], computed for this test by a separate Python
/// implementation of MTH over `hashlib.sha256`. The 8-leaf root is also the published
/// reference value for these inputs.
const PREFIX_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` distinct leaf hashes that depend on `seed`.
fn leaves(seed: u64, n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

fn flip(hash: &Hash, byte: usize, bit: u8) -> Hash {
    let mut flipped = *hash;
    flipped[byte % 32] ^= 1 << (bit % 8);
    flipped
}

/// Where each element of an inclusion proof sits, from the bottom up (`true`: right of the
/// path), following the recursive definition of RFC 9162 `PATH`.
///
/// The verifier hashes the same elements the same way for two (index, size) pairs with the
/// same shape, so the proof does not bind the tree size. For example, index 0 has the shape
/// `[true, true]` in trees of size 3 and 4. The size comes from the signed checkpoint.
fn inclusion_shape(index: u64, size: u64) -> Vec<bool> {
    if size <= 1 {
        return Vec::new();
    }
    let k = size.next_power_of_two() / 2;
    let (mut shape, right) = if index < k {
        (inclusion_shape(index, k), true)
    } else {
        (inclusion_shape(index - k, size - k), false)
    };
    shape.push(right);
    shape
}

/// Describes the shape of a consistency proof, following RFC 9162 `SUBPROOF`: `S` for an
/// element that is the root of the old tree's last subtree, then `R` or `L` for each
/// sibling. Returns `None` for the size pairs whose proof must be empty.
fn consistency_shape(old: u64, new: u64) -> Option<Vec<char>> {
    fn walk(old: u64, new: u64, complete: bool) -> Vec<char> {
        if old == new {
            return if complete { Vec::new() } else { vec!['S'] };
        }
        let k = new.next_power_of_two() / 2;
        let (mut shape, side) = if old <= k {
            (walk(old, k, complete), 'R')
        } else {
            (walk(old - k, new - k, false), 'L')
        };
        shape.push(side);
        shape
    }
    (0 < old && old < new).then(|| walk(old, new, true))
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(
        hex(&root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(root(&[]), EMPTY_ROOT);
}

#[test]
fn roots_match_independently_computed_vectors() {
    let hashes: Vec<Hash> = LEAVES.iter().map(|leaf| leaf_hash(leaf)).collect();
    let mut frontier = Frontier::new();
    for (n, expected) in PREFIX_ROOTS.iter().enumerate() {
        frontier.push(hashes[n]);
        assert_eq!(hex(&root(&hashes[..=n])), *expected, "size {}", n + 1);
        assert_eq!(
            hex(&frontier.root()),
            *expected,
            "frontier at size {}",
            n + 1
        );
    }
}

#[test]
fn repeating_the_last_leaf_changes_the_root() {
    let abc: Vec<Hash> = ["a", "b", "c"]
        .iter()
        .map(|s| leaf_hash(s.as_bytes()))
        .collect();
    let abcc: Vec<Hash> = ["a", "b", "c", "c"]
        .iter()
        .map(|s| leaf_hash(s.as_bytes()))
        .collect();
    assert_ne!(root(&abc), root(&abcc));
}

#[test]
fn one_leaf_tree_has_empty_inclusion_path() {
    let leaf = leaf_hash(b"only");
    let proof = inclusion_proof(&[leaf], 0, 1).unwrap();
    assert!(proof.is_empty());
    verify_inclusion(&leaf, 0, 1, &proof, &leaf).unwrap();
}

#[test]
fn index_equal_to_size_is_rejected() {
    let hashes = leaves(1, 5);
    let err = inclusion_proof(&hashes, 5, 5).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::IndexOutOfRange {
            index: 5,
            tree_size: 5
        }
    ));
    let err = verify_inclusion(&hashes[0], 5, 5, &[], &root(&hashes)).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::IndexOutOfRange {
            index: 5,
            tree_size: 5
        }
    ));
    assert!(matches!(
        inclusion_proof(&[], 0, 0),
        Err(LedgerError::IndexOutOfRange { .. })
    ));
}

#[test]
fn size_beyond_the_leaves_is_rejected() {
    let hashes = leaves(2, 3);
    let err = inclusion_proof(&hashes, 0, 4).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::TreeSizeOutOfRange {
            requested: 4,
            available: 3
        }
    ));
    assert!(consistency_proof(&hashes, 1, 4).is_err());
}

#[test]
fn consistency_from_empty_tree() {
    let hashes = leaves(3, 6);
    let new_root = root(&hashes);
    assert!(consistency_proof(&hashes, 0, 6).unwrap().is_empty());
    verify_consistency(0, 6, &EMPTY_ROOT, &new_root, &[]).unwrap();
    let err = verify_consistency(0, 6, &EMPTY_ROOT, &new_root, &[hashes[0]]).unwrap_err();
    assert!(matches!(err, LedgerError::InvalidProof { .. }));
    // An empty tree with any root but the empty one is not an empty tree.
    assert!(verify_consistency(0, 6, &hashes[0], &new_root, &[]).is_err());
}

#[test]
fn consistency_between_equal_sizes_needs_equal_roots() {
    let hashes = leaves(4, 5);
    let r = root(&hashes);
    verify_consistency(5, 5, &r, &r, &[]).unwrap();
    assert!(verify_consistency(5, 5, &r, &hashes[0], &[]).is_err());
    assert!(verify_consistency(5, 5, &r, &r, &[r]).is_err());
}

#[test]
fn shrinking_consistency_is_rejected() {
    let hashes = leaves(5, 5);
    let err = consistency_proof(&hashes, 4, 3).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::OldSizeExceedsNew {
            old_size: 4,
            new_size: 3
        }
    ));
    let r = root(&hashes);
    assert!(verify_consistency(4, 3, &r, &r, &[]).is_err());
}

#[test]
fn inclusion_proof_does_not_bind_the_tree_size() {
    // Why the size must come from a signed checkpoint: leaf 0 of a 3-leaf tree has the
    // same path shape as in a 4-leaf tree.
    let hashes = leaves(8, 3);
    let proof = inclusion_proof(&hashes, 0, 3).unwrap();
    assert_eq!(inclusion_shape(0, 3), inclusion_shape(0, 4));
    verify_inclusion(&hashes[0], 0, 4, &proof, &root(&hashes)).unwrap();
}

/// Every proof of every tree up to 64 leaves verifies, fails for every other index, and
/// fails for every other size up to 70 that changes the shape of the path.
#[test]
fn inclusion_fails_for_every_other_index_and_size() {
    let all = leaves(6, 64);
    for n in 1..=64u64 {
        let hashes = &all[..n as usize];
        let r = root(hashes);
        for i in 0..n {
            let proof = inclusion_proof(hashes, i, n).unwrap();
            let leaf = &hashes[i as usize];
            verify_inclusion(leaf, i, n, &proof, &r).unwrap();
            for other in (0..n).filter(|&j| j != i) {
                assert!(
                    verify_inclusion(leaf, other, n, &proof, &r).is_err(),
                    "n {n} i {i}"
                );
            }
            for other in (1..=70).filter(|&m| m != n) {
                let accepted = verify_inclusion(leaf, i, other, &proof, &r).is_ok();
                let same_shape = i < other && inclusion_shape(i, other) == inclusion_shape(i, n);
                assert_eq!(accepted, same_shape, "n {n} i {i} size {other}");
            }
        }
    }
}

/// Checks consistency between every pair of sizes up to 40. A proof is accepted for other
/// sizes exactly when it has the same shape for them.
#[test]
fn consistency_holds_between_every_pair_of_small_sizes() {
    let hashes = leaves(7, 40);
    for new in 0..=40 {
        let new_root = root(&hashes[..new as usize]);
        for old in 0..=new {
            let old_root = root(&hashes[..old as usize]);
            let proof = consistency_proof(&hashes, old, new).unwrap();
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
            if consistency_shape(old, new).is_none() {
                continue;
            }
            for (o, n) in (1..=45).flat_map(|n| (1..n).map(move |o| (o, n))) {
                let accepted = verify_consistency(o, n, &old_root, &new_root, &proof).is_ok();
                let same_shape = consistency_shape(o, n) == consistency_shape(old, new);
                assert_eq!(accepted, same_shape, "{old} -> {new} checked as {o} -> {n}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_inclusion_proof_verifies(seed: u64, n in 1usize..=300) {
        let hashes = leaves(seed, n);
        let r = root(&hashes);
        for i in 0..n as u64 {
            let proof = inclusion_proof(&hashes, i, n as u64).unwrap();
            prop_assert!(verify_inclusion(&hashes[i as usize], i, n as u64, &proof, &r).is_ok());
        }
    }
}

proptest! {
    #[test]
    fn inclusion_fails_after_any_change(
        seed: u64,
        n in 1u64..=300,
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let hashes = leaves(seed, n as usize);
        let r = root(&hashes);
        let i = pick.index(n as usize) as u64;
        let leaf = hashes[i as usize];
        let proof = inclusion_proof(&hashes, i, n).unwrap();
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &r).is_ok());

        // A changed leaf, index, size or root.
        prop_assert!(verify_inclusion(&flip(&leaf, byte, bit), i, n, &proof, &r).is_err());
        let other_index = other.index(n as usize + 8) as u64;
        if other_index != i {
            prop_assert!(verify_inclusion(&leaf, other_index, n, &proof, &r).is_err());
        }
        let other_size = other.index(600) as u64 + 1;
        let same_shape = i < other_size && inclusion_shape(i, other_size) == inclusion_shape(i, n);
        if !same_shape {
            prop_assert!(verify_inclusion(&leaf, i, other_size, &proof, &r).is_err());
        }
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &flip(&r, byte, bit)).is_err());

        // A changed, dropped or added path element.
        if !proof.is_empty() {
            let k = other.index(proof.len());
            let mut changed = proof.clone();
            changed[k] = flip(&changed[k], byte, bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &changed, &r).is_err());
            let mut shorter = proof.clone();
            shorter.remove(k);
            prop_assert!(verify_inclusion(&leaf, i, n, &shorter, &r).is_err());
        }
        let mut longer = proof.clone();
        longer.push(leaf);
        prop_assert!(verify_inclusion(&leaf, i, n, &longer, &r).is_err());
    }

    #[test]
    fn consistency_holds_between_any_two_sizes(
        seed: u64,
        new in 0u64..=300,
        pick in any::<prop::sample::Index>(),
    ) {
        let hashes = leaves(seed, new as usize);
        let old = pick.index(new as usize + 1) as u64;
        let old_root = root(&hashes[..old as usize]);
        let proof = consistency_proof(&hashes, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &root(&hashes), &proof).is_ok());
    }

    #[test]
    fn consistency_fails_after_any_change(
        seed: u64,
        new in 2u64..=300,
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let hashes = leaves(seed, new as usize);
        // An old size in 1..new, so that the proof is not trivially empty.
        let old = pick.index(new as usize - 1) as u64 + 1;
        let (old_root, new_root) = (root(&hashes[..old as usize]), root(&hashes));
        let proof = consistency_proof(&hashes, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());

        let flipped_old = flip(&old_root, byte, bit);
        let flipped_new = flip(&new_root, byte, bit);
        prop_assert!(verify_consistency(old, new, &flipped_old, &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flipped_new, &proof).is_err());

        // Other sizes fail unless the proof has the same shape for them.
        let shape = consistency_shape(old, new);
        let other_old = other.index(new as usize + 1) as u64;
        if consistency_shape(other_old, new) != shape {
            prop_assert!(verify_consistency(other_old, new, &old_root, &new_root, &proof).is_err());
        }
        let other_new = other.index(600) as u64 + 1;
        if consistency_shape(old, other_new) != shape {
            prop_assert!(verify_consistency(old, other_new, &old_root, &new_root, &proof).is_err());
        }

        let k = other.index(proof.len());
        let mut changed = proof.clone();
        changed[k] = flip(&changed[k], byte, bit);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &changed).is_err());
        let mut shorter = proof.clone();
        shorter.remove(k);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &shorter).is_err());
        let mut longer = proof.clone();
        longer.push(new_root);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());
    }
}
