use std::collections::BTreeSet;

use curve25519_dalek::ristretto::RistrettoPoint;
use proptest::prelude::*;

use super::*;
use crate::ids::{IdCollector, IdReport, IdRule, read_ids};

fn list(ids: &[&str]) -> (IdList, IdReport) {
    let mut collector = IdCollector::default();
    for id in ids {
        collector.add(&IdRule::default(), id).unwrap();
    }
    collector.finish()
}

fn members(ids: &IdList, outcome: &PsiOutcome) -> BTreeSet<String> {
    let members = outcome
        .members
        .as_ref()
        .expect("this side learns the intersection");
    members.iter().map(|&i| ids.text(i).to_owned()).collect()
}

fn both_learn(a: &[&str], b: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let ((a_ids, _), (b_ids, _)) = (list(a), list(b));
    let (a_keep, b_keep) = (a_ids.clone(), b_ids.clone());
    let (a_out, b_out) =
        run_local(a_ids, Reveal::Intersection, b_ids, Reveal::Intersection, 2).unwrap();
    (members(&a_keep, &a_out), members(&b_keep, &b_out))
}

#[test]
fn duplicates_give_one_member_not_a_cross_product() {
    let (a_list, a_report) = list(&["u1", "u1", "u2", "u3"]);
    let (b_list, b_report) = list(&["u1", "u1", "u1", "u4"]);
    assert_eq!((a_report.duplicates, b_report.duplicates), (1, 2));
    let (a_out, b_out) = run_local(
        a_list.clone(),
        Reveal::Intersection,
        b_list.clone(),
        Reveal::Intersection,
        3,
    )
    .unwrap();
    assert_eq!(members(&a_list, &a_out), BTreeSet::from(["u1".to_owned()]));
    assert_eq!(members(&b_list, &b_out), BTreeSet::from(["u1".to_owned()]));
    assert_eq!((a_out.size, b_out.size), (Some(1), Some(1)));
}

#[test]
fn disjoint_and_empty_sets_give_empty_results_on_both_sides() {
    for (a, b) in [
        (&["a", "b"][..], &["c", "d"][..]),
        (&[], &["c"]),
        (&[], &[]),
    ] {
        let (a_members, b_members) = both_learn(a, b);
        assert!(a_members.is_empty() && b_members.is_empty(), "{a:?} {b:?}");
    }
}

#[test]
fn header_only_file_against_one_id_is_empty() {
    let (a_ids, _) = read_ids("id\n".as_bytes(), None, &IdRule::default(), 10).unwrap();
    let (b_ids, _) = list(&["c"]);
    let (a_out, b_out) =
        run_local(a_ids, Reveal::Intersection, b_ids, Reveal::Intersection, 8).unwrap();
    assert_eq!((a_out.size, b_out.size), (Some(0), Some(0)));
}

#[test]
fn crlf_file_matches_a_file_with_a_byte_order_mark() {
    let rule = IdRule::default();
    let (a_ids, _) = read_ids("id\r\n1001\r\n1002 \r\n\r\n".as_bytes(), None, &rule, 10).unwrap();
    let (b_ids, _) = read_ids("\u{feff}id\n1001\n1002\n".as_bytes(), None, &rule, 10).unwrap();
    let (a_out, b_out) =
        run_local(a_ids, Reveal::Intersection, b_ids, Reveal::Intersection, 8).unwrap();
    assert_eq!((a_out.size, b_out.size), (Some(2), Some(2)));
}

#[test]
fn size_only_and_nothing_reveal_what_the_terms_say() {
    let (a_ids, _) = list(&["1", "2", "3", "4"]);
    let (b_ids, _) = list(&["3", "4", "5"]);
    let (a_out, b_out) = run_local(a_ids, Reveal::Size, b_ids, Reveal::Nothing, 2).unwrap();
    assert_eq!(
        a_out,
        PsiOutcome {
            reveal: Reveal::Size,
            size: Some(2),
            members: None
        }
    );
    assert_eq!(
        b_out,
        PsiOutcome {
            reveal: Reveal::Nothing,
            size: None,
            members: None
        }
    );
}

#[test]
fn identity_and_bad_encodings_are_refused_before_blinding() {
    let (ids, _) = list(&["x"]);
    let mut party = PsiParty::new(ids, Reveal::Intersection, Reveal::Intersection, 2);
    let identity = RistrettoPoint::default().compress().to_bytes();
    let err = party.answer_peer(0, &identity).unwrap_err();
    assert!(
        matches!(err, PsiError::Peer(PointError::Identity { index: 0 })),
        "{err}"
    );
    let err = party.answer_peer(0, &[0xff; 32]).unwrap_err();
    assert!(
        matches!(err, PsiError::Peer(PointError::InvalidEncoding { .. })),
        "{err}"
    );
    assert_eq!(party.peer_seen, 0, "a refused batch changes nothing");
}

#[test]
fn batches_beyond_the_announced_size_or_out_of_order_are_refused() {
    let (ids, _) = list(&["x", "y", "z"]);
    let peer = PsiParty::new(ids.clone(), Reveal::Nothing, Reveal::Nothing, 0);
    let message = peer.blind_own(0, 3);
    let mut party = PsiParty::new(ids, Reveal::Intersection, Reveal::Intersection, 2);
    assert!(matches!(
        party.answer_peer(0, &message),
        Err(PsiError::TooManyElements { .. })
    ));
    assert!(matches!(
        party.answer_peer(1, &message[..32]),
        Err(PsiError::OutOfOrder { .. })
    ));
}

#[test]
fn finishing_early_is_an_error() {
    let (ids, _) = list(&["x"]);
    let party = PsiParty::new(ids, Reveal::Intersection, Reveal::Nothing, 1);
    assert!(matches!(party.finish(), Err(PsiError::Incomplete { .. })));
}

#[test]
fn shuffle_keeps_every_element() {
    let mut items: Vec<u32> = (0..1000).collect();
    shuffle(&mut items);
    assert_ne!(items, (0..1000).collect::<Vec<_>>());
    items.sort_unstable();
    assert_eq!(items, (0..1000).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn intersection_equals_the_plain_one(
        a in proptest::collection::vec(0u16..60, 0..40),
        b in proptest::collection::vec(0u16..60, 0..40),
        batch in 1usize..9,
        size_only in any::<bool>(),
    ) {
        let a_text: Vec<String> = a.iter().map(|v| format!("id-{v}")).collect();
        let b_text: Vec<String> = b.iter().map(|v| format!("id-{v}")).collect();
        let a_refs: Vec<&str> = a_text.iter().map(String::as_str).collect();
        let b_refs: Vec<&str> = b_text.iter().map(String::as_str).collect();
        let plain: BTreeSet<String> = a_text.iter()
            .filter(|x| b_text.contains(x)).cloned().collect();

        let ((a_ids, _), (b_ids, _)) = (list(&a_refs), list(&b_refs));
        let a_keep = a_ids.clone();
        let a_learns = if size_only { Reveal::Size } else { Reveal::Intersection };
        let (a_out, b_out) = run_local(a_ids, a_learns, b_ids, Reveal::Size, batch).unwrap();
        prop_assert_eq!(a_out.size, Some(plain.len() as u64));
        prop_assert_eq!(b_out.size, Some(plain.len() as u64));
        if !size_only {
            prop_assert_eq!(members(&a_keep, &a_out), plain);
        }
    }
}
