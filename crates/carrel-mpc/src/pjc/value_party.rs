//! The ValueParty's steps: encrypt its per-id totals, respond to message 1 with fake matches
//! and padding, decrypt the masked sums and add noise.

use std::fmt;

use curve25519_dalek::ristretto::RistrettoPoint;
use openssl::bn::{BigNum, BigNumContext};
use rayon::prelude::*;

use super::input::{ValueTotals, total_values};
use super::message::{Message1, Message2, Message3, Message4, ValueEntry};
use super::noise::NoisePlan;
use super::packing::pack;
use super::paillier::{PaillierError, PaillierPublicKey, PaillierSecretKey, RandomizerPool};
use super::random::{OsRandom, random_point};
use super::{MAX_GROUPS, PjcError, PjcParams, PrivacyLoss, fake_match_point, hash_id};
use crate::group::SecretScalar;

/// The ValueParty before message 1, with its entries already blinded and encrypted.
pub struct ValueParty {
    params: PjcParams,
    plan: NoisePlan,
    key: PaillierSecretKey,
    pool: RandomizerPool,
    secret: SecretScalar,
    /// `(H(w)^b, Enc(x_w))` for each id `w`.
    values: Vec<ValueEntry>,
    rows_dropped: usize,
}

/// The ValueParty after message 2, waiting for message 3.
pub struct ValuePartyResponded {
    plan: NoisePlan,
    key: PaillierSecretKey,
    group_count: usize,
}

impl ValueParty {
    /// Prepares a run over `rows` with a fresh 2048-bit key and precomputed randomness
    /// for the real entries and `2s` more, the expected fakes of one group and of the
    /// unmatched entries. Further randomness is computed in [`Self::respond`].
    ///
    /// # Errors
    ///
    /// As [`Self::with_key`].
    pub fn new<I: AsRef<[u8]> + Sync>(
        params: &PjcParams,
        rows: &[(I, f64)],
    ) -> Result<Self, PjcError> {
        let plan = NoisePlan::new(params)?;
        let totals = total_values(rows, params)?;
        let key = PaillierSecretKey::generate()?;
        let pool = RandomizerPool::generate(&key, totals.ids.len() + plan.padding())?;
        Self::prepare(params, plan, key, pool, rows, totals)
    }

    /// Prepares a run over `rows` with a key and randomizers made before the data
    /// arrived: groups rows per id, keeps the first `max_rows_per_id` of each, clamps and
    /// packs each id's totals, then blinds the ids and encrypts the totals. Randomizers
    /// missing from the pool are computed here.
    ///
    /// # Errors
    ///
    /// [`PjcError::InvalidParameter`], [`PjcError::InvalidInput`] for a NaN value,
    /// [`PjcError::SetTooLarge`], or [`PjcError::Paillier`] if the pool belongs to
    /// another key or OpenSSL fails.
    pub fn with_key<I: AsRef<[u8]> + Sync>(
        params: &PjcParams,
        key: PaillierSecretKey,
        pool: RandomizerPool,
        rows: &[(I, f64)],
    ) -> Result<Self, PjcError> {
        let plan = NoisePlan::new(params)?;
        let totals = total_values(rows, params)?;
        Self::prepare(params, plan, key, pool, rows, totals)
    }

    fn prepare<I: AsRef<[u8]> + Sync>(
        params: &PjcParams,
        plan: NoisePlan,
        key: PaillierSecretKey,
        mut pool: RandomizerPool,
        rows: &[(I, f64)],
        totals: ValueTotals,
    ) -> Result<Self, PjcError> {
        let secret = SecretScalar::random();
        let points: Vec<RistrettoPoint> = totals
            .ids
            .par_iter()
            .map(|total| {
                let id = rows[total.first_row].0.as_ref();
                secret.blind(&hash_id(&params.session_id, id))
            })
            .collect();

        let n = key.public_key().modulus();
        let mut plaintexts: Vec<BigNum> = totals
            .ids
            .par_iter()
            .map_init(BigNumContext::new, |ctx, total| {
                let ctx = ctx
                    .as_mut()
                    .map_err(|e| PaillierError::OpenSsl(e.clone()))?;
                pack(total.sum, i128::from(total.rows), n, ctx)
            })
            .collect::<Result<_, _>>()?;
        let ciphertexts = key.encrypt_all(&plaintexts, &mut pool);
        for plaintext in &mut plaintexts {
            plaintext.clear();
        }

        let values = points
            .into_iter()
            .zip(ciphertexts?)
            .map(|(point, ciphertext)| ValueEntry { point, ciphertext })
            .collect();
        Ok(Self {
            params: params.clone(),
            plan,
            key,
            pool,
            secret,
            values,
            rows_dropped: totals.rows_dropped,
        })
    }

    /// Returns the privacy loss of the run, to charge to the budget before
    /// [`Self::respond`].
    pub fn privacy_loss(&self) -> PrivacyLoss {
        self.plan.loss
    }

    /// Returns the number of input rows dropped beyond `max_rows_per_id` for their id.
    pub fn rows_dropped(&self) -> usize {
        self.rows_dropped
    }

    /// Returns the number of distinct ids in the input.
    pub fn id_count(&self) -> usize {
        self.values.len()
    }

    /// Returns the Paillier public key sent in message 2.
    pub fn public_key(&self) -> &PaillierPublicKey {
        self.key.public_key()
    }

    /// Responds to message 1. Raises the IdParty's blinded ids to `b`, adds to each group
    /// `f_g` fake matches `F^t` and `2s - f_g` random padding elements, and shuffles each
    /// group list. The value list gets the matching `(Q^t, Enc(0))` for every fake, plus
    /// `f_unmatched` random entries with `Enc(0)`, and is shuffled.
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] for a group count outside `1..=16` or too many ids;
    /// [`PjcError::Noise`] or [`PjcError::Paillier`] for local failures.
    pub fn respond(self, message: &Message1) -> Result<(ValuePartyResponded, Message2), PjcError> {
        self.check_message1(message)?;
        let group_count = message.groups.len();

        // One fake count per group, and a last one for the unmatched padding.
        let fake_counts = self.plan.fake_counts(group_count + 1)?;
        let mut random = OsRandom::new();
        let mut zero_points = Vec::new();
        let mut groups = Vec::with_capacity(group_count);
        for (list, &fakes) in message.groups.iter().zip(&fake_counts) {
            let (points, partners) =
                self.group_list(list, fakes, &message.fake_match_base, &mut random);
            groups.push(points);
            zero_points.extend(partners);
        }
        zero_points.extend((0..fake_counts[group_count]).map(|_| random_point()));

        // Every fake and padding entry of the value list carries an encryption of 0.
        let mut pool = self.pool;
        let zeros = (0..zero_points.len())
            .map(|_| BigNum::new())
            .collect::<Result<Vec<_>, _>>()
            .map_err(PaillierError::from)?;
        let zero_ciphertexts = self.key.encrypt_all(&zeros, &mut pool)?;
        let mut values = self.values;
        values.extend(
            zero_points
                .into_iter()
                .zip(zero_ciphertexts)
                .map(|(point, ciphertext)| ValueEntry { point, ciphertext }),
        );
        random.shuffle(&mut values);

        let message = Message2 {
            public_key: self.key.public_key().try_clone()?,
            groups,
            values,
        };
        let responded = ValuePartyResponded {
            plan: self.plan,
            key: self.key,
            group_count,
        };
        Ok((responded, message))
    }

    fn check_message1(&self, message: &Message1) -> Result<(), PjcError> {
        let group_count = message.groups.len();
        if !(1..=MAX_GROUPS).contains(&group_count) {
            return Err(PjcError::InvalidGroupCount {
                message: 1,
                found: group_count,
            });
        }
        let total: usize = message.groups.iter().map(Vec::len).sum();
        if total > self.params.max_set_size {
            return Err(PjcError::TooManyEntries {
                message: 1,
                list: "all groups together".to_owned(),
                found: total,
                limit: self.params.max_set_size,
            });
        }
        Ok(())
    }

    /// Builds one shuffled group list of message 2: `X^b` for each received `X`, `F^t`
    /// for `fakes` fresh scalars `t`, and random padding up to `2s` extra entries.
    /// Returns it with the fakes' partners `Q^t` for the value list.
    fn group_list(
        &self,
        list: &[RistrettoPoint],
        fakes: usize,
        fake_match_base: &RistrettoPoint,
        random: &mut OsRandom,
    ) -> (Vec<RistrettoPoint>, Vec<RistrettoPoint>) {
        let q = fake_match_point(&self.params.session_id);
        let mut points: Vec<RistrettoPoint> =
            list.par_iter().map(|x| self.secret.blind(x)).collect();
        let (in_group, partners): (Vec<_>, Vec<_>) = (0..fakes)
            .into_par_iter()
            .map(|_| {
                let t = SecretScalar::random();
                (t.blind(fake_match_base), t.blind(&q))
            })
            .unzip();
        points.extend(in_group);
        points.extend((fakes..self.plan.padding()).map(|_| random_point()));
        random.shuffle(&mut points);
        (points, partners)
    }
}

impl ValuePartyResponded {
    /// Returns the Paillier public key, for decoding message 3.
    pub fn public_key(&self) -> &PaillierPublicKey {
        self.key.public_key()
    }

    /// Decrypts each group's masked sum and adds noise to its sum part and its row-count
    /// part. The masks are uniform in `Z_n`, so the plaintexts show nothing of the sums.
    ///
    /// # Errors
    ///
    /// [`PjcError::GroupCountMismatch`] if message 3 has another group count;
    /// [`PjcError::Noise`] or [`PjcError::Paillier`] for local failures.
    pub fn release(self, message: &Message3) -> Result<Message4, PjcError> {
        if message.ciphertexts.len() != self.group_count {
            return Err(PjcError::GroupCountMismatch {
                message: 3,
                expected: self.group_count,
                found: message.ciphertexts.len(),
            });
        }
        let sum_noise = self.plan.sum_noise(self.group_count)?;
        let rows_noise = self.plan.rows_noise(self.group_count)?;

        let key = &self.key;
        let n = key.public_key().modulus();
        let plaintexts = message
            .ciphertexts
            .par_iter()
            .zip(sum_noise.into_par_iter().zip(rows_noise))
            .map_init(BigNumContext::new, |ctx, (ciphertext, (sum, rows))| {
                let ctx = ctx
                    .as_mut()
                    .map_err(|e| PaillierError::OpenSsl(e.clone()))?;
                let mut masked = key.decrypt(ciphertext, ctx)?;
                let mut noise = pack(i128::from(sum), i128::from(rows), n, ctx)?;
                let mut noisy = BigNum::new()?;
                noisy.mod_add(&masked, &noise, n, ctx)?;
                masked.clear();
                noise.clear();
                Ok::<_, PaillierError>(noisy)
            })
            .collect::<Result<_, _>>()?;
        Ok(Message4 { plaintexts })
    }
}

impl fmt::Debug for ValueParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueParty")
            .field("id_count", &self.values.len())
            .field("rows_dropped", &self.rows_dropped)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ValuePartyResponded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValuePartyResponded")
            .field("group_count", &self.group_count)
            .finish_non_exhaustive()
    }
}
