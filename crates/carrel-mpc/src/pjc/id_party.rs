//! The IdParty's steps: blind its ids, match and mask the encrypted sums, unmask the
//! noisy result.

use std::collections::HashMap;
use std::fmt;

use openssl::bn::{BigNum, BigNumContext};
use rayon::prelude::*;

use super::input::{from_fixed, group_ids};
use super::message::{Message1, Message2, Message3, Message4};
use super::noise::NoisePlan;
use super::packing::unpack;
use super::paillier::{Ciphertext, PaillierError, PaillierPublicKey};
use super::random::OsRandom;
use super::{
    GroupRelease, MAX_GROUPS, NoiseMode, Part, PjcError, PjcOutput, PjcParams, Position,
    fake_match_point, hash_id,
};
use crate::group::{POINT_LEN, SecretScalar};

/// The IdParty after message 1, waiting for message 2.
pub struct IdParty {
    params: PjcParams,
    plan: NoisePlan,
    secret: SecretScalar,
    group_sizes: Vec<usize>,
    duplicates_dropped: usize,
}

/// The IdParty after message 3, holding the masks until message 4.
pub struct IdPartyMasked {
    plan: NoisePlan,
    public_key: PaillierPublicKey,
    /// Masks `r_g`, uniform in `[0, n)` and cleared on drop.
    masks: Vec<BigNum>,
    /// Matched entries per group, fakes included (`n_g`).
    match_counts: Vec<usize>,
}

impl IdParty {
    /// Starts a run over `ids`, each with a group index below `group_count`: keeps each
    /// id once (its first group wins), blinds it as `H(u)^a` and shuffles each group.
    ///
    /// # Errors
    ///
    /// [`PjcError::InvalidParameter`] for invalid parameters or a group count outside
    /// `1..=16`, [`PjcError::InvalidInput`] for a group index out of range, and
    /// [`PjcError::SetTooLarge`] beyond `max_set_size` distinct ids.
    pub fn start<I: AsRef<[u8]> + Sync>(
        params: &PjcParams,
        ids: &[(I, usize)],
        group_count: usize,
    ) -> Result<(Self, Message1), PjcError> {
        let plan = NoisePlan::new(params)?;
        if !(1..=MAX_GROUPS).contains(&group_count) {
            return Err(PjcError::InvalidParameter {
                name: "group_count",
                reason: format!("{group_count} is not in 1..={MAX_GROUPS}"),
            });
        }
        let grouped = group_ids(ids, group_count, params.max_set_size)?;

        let secret = SecretScalar::random();
        let mut random = OsRandom::new();
        let mut groups = Vec::with_capacity(group_count);
        for rows in &grouped.groups {
            let mut points: Vec<_> = rows
                .par_iter()
                .map(|&row| secret.blind(&hash_id(&params.session_id, ids[row].0.as_ref())))
                .collect();
            random.shuffle(&mut points);
            groups.push(points);
        }
        let fake_match_base = secret.blind(&fake_match_point(&params.session_id));

        let party = Self {
            params: params.clone(),
            plan,
            secret,
            group_sizes: grouped.groups.iter().map(Vec::len).collect(),
            duplicates_dropped: grouped.duplicates_dropped,
        };
        let message = Message1 {
            groups,
            fake_match_base,
        };
        Ok((party, message))
    }

    /// Returns the number of input rows dropped because their id was already seen.
    pub fn duplicates_dropped(&self) -> usize {
        self.duplicates_dropped
    }

    /// Returns the number of distinct ids in each group.
    pub fn group_sizes(&self) -> &[usize] {
        &self.group_sizes
    }

    /// Returns the maximum number of entries in any list of message 2: `max_set_size`
    /// ids plus the fake matches and padding of every group and of the unmatched entries.
    pub fn max_message2_entries(&self) -> usize {
        let cells = self.group_sizes.len() + 1;
        self.params.max_set_size + cells * self.plan.padding()
    }

    /// Matches the value entries of message 2 against the group lists, multiplies each
    /// group's matched ciphertexts and masks each product with a uniform `r_g`.
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] if the lists do not have the expected lengths, repeat
    /// an element or match one element twice; [`PjcError::Paillier`] if OpenSSL fails.
    pub fn mask(self, message: &Message2) -> Result<(IdPartyMasked, Message3), PjcError> {
        self.check_lengths(message)?;
        let matches = self.match_entries(message)?;

        let key = &message.public_key;
        let match_counts: Vec<usize> = matches.iter().map(Vec::len).collect();
        let masked: Vec<(BigNum, Ciphertext)> = matches
            .par_iter()
            .map_init(BigNumContext::new, |ctx, ciphertexts| {
                let ctx = ctx
                    .as_mut()
                    .map_err(|e| PaillierError::OpenSsl(e.clone()))?;
                let sum = key.add_all(ciphertexts)?;
                let mut mask = BigNum::new()?;
                key.modulus().rand_range(&mut mask)?;
                let encrypted_mask = key.encrypt(&mask, ctx)?;
                let masked = key.add(&sum, &encrypted_mask, ctx)?;
                Ok::<_, PaillierError>((mask, masked))
            })
            .collect::<Result<_, _>>()?;

        let (masks, ciphertexts): (Vec<_>, Vec<_>) = masked.into_iter().unzip();
        let masked = IdPartyMasked {
            plan: self.plan,
            public_key: key.try_clone()?,
            masks,
            match_counts,
        };
        Ok((masked, Message3 { ciphertexts }))
    }

    fn check_lengths(&self, message: &Message2) -> Result<(), PjcError> {
        if message.groups.len() != self.group_sizes.len() {
            return Err(PjcError::GroupCountMismatch {
                message: 2,
                expected: self.group_sizes.len(),
                found: message.groups.len(),
            });
        }
        for (group, (list, size)) in message.groups.iter().zip(&self.group_sizes).enumerate() {
            let expected = size + self.plan.padding();
            if list.len() != expected {
                return Err(PjcError::WrongListLength {
                    group,
                    expected,
                    found: list.len(),
                });
            }
        }
        let limit = self.max_message2_entries();
        if message.values.len() > limit {
            return Err(PjcError::TooManyEntries {
                message: 2,
                list: "the value list".to_owned(),
                found: message.values.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Returns, per group, the ciphertexts of the value entries whose `Y^a` is in the
    /// group's list.
    fn match_entries<'m>(
        &self,
        message: &'m Message2,
    ) -> Result<Vec<Vec<&'m Ciphertext>>, PjcError> {
        let mut index: HashMap<[u8; POINT_LEN], (usize, usize)> = HashMap::new();
        for (group, list) in message.groups.iter().enumerate() {
            let encoded: Vec<[u8; POINT_LEN]> = list
                .par_iter()
                .map(|point| point.compress().to_bytes())
                .collect();
            for (entry, bytes) in encoded.into_iter().enumerate() {
                if index.insert(bytes, (group, entry)).is_some() {
                    return Err(PjcError::DuplicateElement {
                        position: Position {
                            message: 2,
                            part: Part::Group(group),
                            index: entry,
                        },
                    });
                }
            }
        }

        let found: Vec<Option<(usize, usize)>> = message
            .values
            .par_iter()
            .map(|entry| {
                let blinded = self.secret.blind(&entry.point).compress().to_bytes();
                index.get(&blinded).copied()
            })
            .collect();

        let mut matched: Vec<Vec<bool>> = message
            .groups
            .iter()
            .map(|list| vec![false; list.len()])
            .collect();
        let mut per_group: Vec<Vec<&Ciphertext>> = vec![Vec::new(); message.groups.len()];
        for (position, hit) in found.into_iter().enumerate() {
            let Some((group, entry)) = hit else { continue };
            if std::mem::replace(&mut matched[group][entry], true) {
                return Err(PjcError::DuplicateMatch {
                    index: position,
                    group,
                });
            }
            per_group[group].push(&message.values[position].ciphertext);
        }
        Ok(per_group)
    }
}

impl IdPartyMasked {
    /// Returns the ValueParty's Paillier public key from message 2, for decoding message 4.
    pub fn public_key(&self) -> &PaillierPublicKey {
        &self.public_key
    }

    /// Returns `n_g` per group: matched ids plus fake matches.
    pub fn match_counts(&self) -> &[usize] {
        &self.match_counts
    }

    /// Removes the masks from message 4, unpacks each group's noisy row count and sum,
    /// and applies the release threshold.
    ///
    /// # Errors
    ///
    /// [`PjcError::GroupCountMismatch`] or [`PjcError::ImplausibleResult`] if message 4
    /// does not fit message 3; [`PjcError::Paillier`] if OpenSSL fails.
    pub fn finish(self, message: &Message4) -> Result<PjcOutput, PjcError> {
        if message.plaintexts.len() != self.masks.len() {
            return Err(PjcError::GroupCountMismatch {
                message: 4,
                expected: self.masks.len(),
                found: message.plaintexts.len(),
            });
        }
        let n = self.public_key.modulus();
        let mut ctx = BigNumContext::new().map_err(PaillierError::from)?;
        let noisy = self.plan.mode == NoiseMode::DiscreteLaplace;
        let shift = self.plan.shift as i64;

        let mut groups = Vec::with_capacity(self.masks.len());
        let mut total_persons = 0i64;
        for (group, (plaintext, mask)) in message.plaintexts.iter().zip(&self.masks).enumerate() {
            let mut value = BigNum::new().map_err(PaillierError::from)?;
            value
                .mod_sub(plaintext, mask, n, &mut ctx)
                .map_err(PaillierError::from)?;
            let (sum, rows) =
                unpack(&value, n, &mut ctx)?.ok_or(PjcError::ImplausibleResult { group })?;
            value.clear();
            let rows = i64::try_from(rows).map_err(|_| PjcError::ImplausibleResult { group })?;

            let persons = self.match_counts[group] as i64 - shift;
            total_persons += persons;
            let release = GroupRelease {
                persons,
                rows,
                sum: from_fixed(sum),
            };
            let released = !noisy || persons >= self.plan.threshold;
            groups.push(released.then_some(release));
        }
        Ok(PjcOutput {
            groups,
            total_persons,
            threshold: noisy.then_some(self.plan.threshold),
        })
    }
}

impl fmt::Debug for IdParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdParty")
            .field("group_sizes", &self.group_sizes)
            .field("duplicates_dropped", &self.duplicates_dropped)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for IdPartyMasked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdPartyMasked")
            .field("match_counts", &self.match_counts)
            .finish_non_exhaustive()
    }
}

impl Drop for IdPartyMasked {
    fn drop(&mut self) {
        for mask in &mut self.masks {
            mask.clear();
        }
    }
}
