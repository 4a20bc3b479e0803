//! Paillier encryption over a 2048-bit modulus, on OpenSSL's big numbers.
//!
//! With `n = p q` and generator `g = n + 1`, a plaintext `m` in `Z_n` encrypts to
//! `c = (1 + m n) r^n mod n^2` for a random `r` in `Z_n^*`. Multiplying ciphertexts adds
//! their plaintexts mod `n`. The key owner computes `r^n` modulo `p^2` and `q^2` and
//! recombines the two (CRT), about four times faster than one exponentiation modulo
//! `n^2` (NOTES.md beside this file gives the measurement). A [`RandomizerPool`]
//! contains such values computed ahead of the data.
//! Decryption uses the same split.
//!
//! # Security
//!
//! Exponentiations with a secret base, exponent or modulus run in OpenSSL's
//! constant-time path (`BN_FLG_CONSTTIME`). Multiplication, reduction and CRT
//! recombination use OpenSSL's general arithmetic, which makes no constant-time promise.
//! Secret numbers are overwritten (`BN_clear`) when dropped.

use std::fmt;

use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::error::ErrorStack;
use rayon::prelude::*;

/// Bit length of the modulus `n`.
pub const MODULUS_BITS: i32 = 2048;

/// Length of an encoded modulus or plaintext, big-endian and zero-padded.
pub const MODULUS_BYTES: usize = 256;

/// Length of an encoded ciphertext (an element of `Z_{n^2}`), big-endian and zero-padded.
pub const CIPHERTEXT_BYTES: usize = 512;

/// Failure of a Paillier operation or of a check on a peer's value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PaillierError {
    /// A peer's ciphertext is outside `Z_{n^2}^*`.
    #[error("ciphertext {index} is invalid: {fault}")]
    InvalidCiphertext {
        /// Position of the ciphertext in its list.
        index: usize,
        /// The fault found.
        fault: CiphertextFault,
    },
    /// A peer's plaintext is not less than the modulus.
    #[error("plaintext {index} is not less than the modulus n")]
    PlaintextOutOfRange {
        /// Position of the plaintext in its list.
        index: usize,
    },
    /// An encoded number has the wrong length.
    #[error("an encoded value has {found} bytes, expected {expected}")]
    InvalidLength {
        /// Expected length in bytes.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A peer's public modulus is not an odd number of exactly [`MODULUS_BITS`] bits.
    #[error("the public modulus has {bits} bits or is even; expected an odd {MODULUS_BITS}-bit n")]
    InvalidModulus {
        /// Bit length of the modulus received.
        bits: i32,
    },
    /// Randomizers computed under another key were offered for encryption.
    #[error("the randomizer pool belongs to a different key")]
    ForeignPool,
    /// OpenSSL reported a failure (allocation, random source).
    #[error("OpenSSL big-number operation failed: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// Fault of a ciphertext received from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CiphertextFault {
    /// It is 0 or not less than `n^2`.
    OutOfRange,
    /// It shares a factor with `n`, so it has no inverse modulo `n^2`.
    NotCoprime,
}

impl fmt::Display for CiphertextFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("it is 0 or not less than n^2"),
            Self::NotCoprime => f.write_str("it shares a factor with n"),
        }
    }
}

/// A Paillier ciphertext, an element of `Z_{n^2}^*`.
pub struct Ciphertext(BigNum);

impl Ciphertext {
    /// Encodes the ciphertext as [`CIPHERTEXT_BYTES`] big-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // The value is below n^2 < 2^4096, so it fits the padded width.
        self.0
            .to_vec_padded(CIPHERTEXT_BYTES as i32)
            .expect("a ciphertext is below n^2 and fits 512 bytes")
    }

    /// Returns the ciphertext as a number.
    pub fn as_bignum(&self) -> &BigNumRef {
        &self.0
    }

    /// Copies the ciphertext.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL cannot allocate.
    pub fn try_clone(&self) -> Result<Self, PaillierError> {
        Ok(Self(self.0.to_owned()?))
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({} bits)", self.0.num_bits())
    }
}

/// An `r^n mod n^2` value: the random factor of one encryption. It is secret until used,
/// because it removes the randomness from the ciphertext it makes.
pub struct Randomizer(BigNum);

impl Drop for Randomizer {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// The public key `n`, with `n^2` cached.
pub struct PaillierPublicKey {
    n: BigNum,
    n_squared: BigNum,
}

impl fmt::Debug for PaillierPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaillierPublicKey({} bits)", self.n.num_bits())
    }
}

impl PaillierPublicKey {
    /// Decodes a peer's modulus from [`MODULUS_BYTES`] big-endian bytes.
    ///
    /// # Errors
    ///
    /// [`PaillierError::InvalidLength`] or [`PaillierError::InvalidModulus`] if it is not
    /// an odd number of exactly [`MODULUS_BITS`] bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PaillierError> {
        if bytes.len() != MODULUS_BYTES {
            return Err(PaillierError::InvalidLength {
                expected: MODULUS_BYTES,
                found: bytes.len(),
            });
        }
        Self::from_modulus(BigNum::from_slice(bytes)?)
    }

    fn from_modulus(n: BigNum) -> Result<Self, PaillierError> {
        if n.num_bits() != MODULUS_BITS || !n.is_odd() {
            return Err(PaillierError::InvalidModulus { bits: n.num_bits() });
        }
        let mut ctx = BigNumContext::new()?;
        let mut n_squared = BigNum::new()?;
        n_squared.sqr(&n, &mut ctx)?;
        Ok(Self { n, n_squared })
    }

    /// Encodes the modulus as [`MODULUS_BYTES`] big-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.n
            .to_vec_padded(MODULUS_BYTES as i32)
            .expect("the modulus has exactly 2048 bits")
    }

    /// Returns the modulus `n`.
    pub fn modulus(&self) -> &BigNumRef {
        &self.n
    }

    /// Decodes and checks a peer's ciphertext: `0 < c < n^2` and `gcd(c, n) = 1`.
    ///
    /// # Errors
    ///
    /// [`PaillierError::InvalidLength`], or [`PaillierError::InvalidCiphertext`] naming
    /// `index`.
    pub fn ciphertext_from_bytes(
        &self,
        bytes: &[u8],
        index: usize,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let value = self.decode_in_range(bytes, index)?;
        if !self.is_coprime(&value, ctx)? {
            return Err(PaillierError::InvalidCiphertext {
                index,
                fault: CiphertextFault::NotCoprime,
            });
        }
        Ok(Ciphertext(value))
    }

    /// Decodes and checks a list of peer ciphertexts, as [`Self::ciphertext_from_bytes`]
    /// does for one, in parallel.
    ///
    /// Coprimality is checked on the product of all values modulo `n`: a prime divides
    /// that product exactly when it divides one of the values. Only when the product
    /// fails is each value checked, to name the first one at fault.
    ///
    /// # Errors
    ///
    /// As [`Self::ciphertext_from_bytes`], for the first invalid ciphertext.
    pub fn ciphertexts_from_bytes(
        &self,
        encoded: &[&[u8]],
    ) -> Result<Vec<Ciphertext>, PaillierError> {
        let values: Vec<BigNum> = encoded
            .par_iter()
            .enumerate()
            .map(|(index, bytes)| self.decode_in_range(bytes, index))
            .collect::<Result<_, _>>()?;

        let mut ctx = BigNumContext::new()?;
        let refs: Vec<&BigNumRef> = values.iter().map(|value| value.as_ref()).collect();
        let product = product_mod(&refs, &self.n)?;
        if !self.is_coprime(&product, &mut ctx)? {
            for (index, value) in values.iter().enumerate() {
                if !self.is_coprime(value, &mut ctx)? {
                    return Err(PaillierError::InvalidCiphertext {
                        index,
                        fault: CiphertextFault::NotCoprime,
                    });
                }
            }
        }
        Ok(values.into_iter().map(Ciphertext).collect())
    }

    fn decode_in_range(&self, bytes: &[u8], index: usize) -> Result<BigNum, PaillierError> {
        if bytes.len() != CIPHERTEXT_BYTES {
            return Err(PaillierError::InvalidLength {
                expected: CIPHERTEXT_BYTES,
                found: bytes.len(),
            });
        }
        let value = BigNum::from_slice(bytes)?;
        if value.num_bits() == 0 || value >= self.n_squared {
            return Err(PaillierError::InvalidCiphertext {
                index,
                fault: CiphertextFault::OutOfRange,
            });
        }
        Ok(value)
    }

    /// Returns whether `gcd(value, n) = 1`.
    fn is_coprime(
        &self,
        value: &BigNumRef,
        ctx: &mut BigNumContext,
    ) -> Result<bool, PaillierError> {
        let mut reduced = BigNum::new()?;
        reduced.nnmod(value, &self.n, ctx)?;
        let mut divisor = BigNum::new()?;
        divisor.gcd(&reduced, &self.n, ctx)?;
        Ok(divisor == BigNum::from_u32(1)?)
    }

    /// Decodes a peer's plaintext, which must be less than `n`.
    ///
    /// # Errors
    ///
    /// [`PaillierError::InvalidLength`] or [`PaillierError::PlaintextOutOfRange`].
    pub fn plaintext_from_bytes(
        &self,
        bytes: &[u8],
        index: usize,
    ) -> Result<BigNum, PaillierError> {
        if bytes.len() != MODULUS_BYTES {
            return Err(PaillierError::InvalidLength {
                expected: MODULUS_BYTES,
                found: bytes.len(),
            });
        }
        let value = BigNum::from_slice(bytes)?;
        if value >= self.n {
            return Err(PaillierError::PlaintextOutOfRange { index });
        }
        Ok(value)
    }

    /// Encrypts `m mod n` with fresh randomness, using the public key only.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn encrypt(
        &self,
        plaintext: &BigNumRef,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let randomizer = self.randomizer(ctx)?;
        self.encrypt_with(plaintext, &randomizer, ctx)
    }

    /// Adds the plaintexts of two ciphertexts (mod `n`).
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn add(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let mut sum = BigNum::new()?;
        sum.mod_mul(&a.0, &b.0, &self.n_squared, ctx)?;
        Ok(Ciphertext(sum))
    }

    /// Adds the plaintexts of all ciphertexts (mod `n`). With none, returns `1`, the
    /// encryption of 0 without randomness.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn add_all(&self, ciphertexts: &[&Ciphertext]) -> Result<Ciphertext, PaillierError> {
        let values: Vec<&BigNumRef> = ciphertexts.iter().map(|c| c.0.as_ref()).collect();
        Ok(Ciphertext(product_mod(&values, &self.n_squared)?))
    }

    /// Copies the key.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL cannot allocate.
    pub fn try_clone(&self) -> Result<Self, PaillierError> {
        Ok(Self {
            n: self.n.to_owned()?,
            n_squared: self.n_squared.to_owned()?,
        })
    }

    /// Adds the constant `plaintext mod n` to the plaintext of `c`, without new randomness.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn add_plaintext(
        &self,
        c: &Ciphertext,
        plaintext: &BigNumRef,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let term = self.plaintext_term(plaintext, ctx)?;
        let mut sum = BigNum::new()?;
        sum.mod_mul(&c.0, &term, &self.n_squared, ctx)?;
        Ok(Ciphertext(sum))
    }

    /// Multiplies `c` by a fresh `r^n`: same plaintext, unlinkable ciphertext.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn rerandomize(
        &self,
        c: &Ciphertext,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let randomizer = self.randomizer(ctx)?;
        let mut fresh = BigNum::new()?;
        fresh.mod_mul(&c.0, &randomizer.0, &self.n_squared, ctx)?;
        Ok(Ciphertext(fresh))
    }

    /// Computes `r^n mod n^2` for a random `r` in `Z_n^*` with one exponentiation
    /// modulo `n^2`.
    fn randomizer(&self, ctx: &mut BigNumContext) -> Result<Randomizer, PaillierError> {
        let mut r = random_unit(&self.n, ctx)?;
        let mut value = BigNum::new()?;
        value.mod_exp(&r, &self.n, &self.n_squared, ctx)?;
        r.clear();
        Ok(Randomizer(value))
    }

    /// Encrypts with a given `r^n`: `(1 + m n) r^n mod n^2`.
    fn encrypt_with(
        &self,
        plaintext: &BigNumRef,
        randomizer: &Randomizer,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        let mut term = self.plaintext_term(plaintext, ctx)?;
        let mut c = BigNum::new()?;
        c.mod_mul(&term, &randomizer.0, &self.n_squared, ctx)?;
        term.clear();
        Ok(Ciphertext(c))
    }

    /// Returns `g^m = 1 + (m mod n) n`, which is already below `n^2`.
    fn plaintext_term(
        &self,
        plaintext: &BigNumRef,
        ctx: &mut BigNumContext,
    ) -> Result<BigNum, PaillierError> {
        let mut reduced = BigNum::new()?;
        reduced.nnmod(plaintext, &self.n, ctx)?;
        let mut term = BigNum::new()?;
        term.checked_mul(&reduced, &self.n, ctx)?;
        term.add_word(1)?;
        reduced.clear();
        Ok(term)
    }
}

/// The secret key `(p, q)` with the constants for CRT decryption and randomizers.
pub struct PaillierSecretKey {
    public: PaillierPublicKey,
    p: Half,
    q: Half,
    /// `q^-1 mod p`, to recombine a plaintext from its residues mod `p` and `q`.
    q_inverse_mod_p: BigNum,
    /// `(q^2)^-1 mod p^2`, to recombine `r^n` from its residues mod `p^2` and `q^2`.
    q_squared_inverse_mod_p_squared: BigNum,
}

/// The values attached to one prime factor.
struct Half {
    prime: BigNum,
    squared: BigNum,
    minus_one: BigNum,
    /// `h = L(g^(prime-1) mod prime^2)^-1 mod prime` with `L(x) = (x - 1) / prime`.
    h: BigNum,
}

impl Half {
    fn new(
        mut prime: BigNum,
        n: &BigNumRef,
        ctx: &mut BigNumContext,
    ) -> Result<Self, PaillierError> {
        prime.set_const_time();
        let mut squared = BigNum::new()?;
        squared.sqr(&prime, ctx)?;
        squared.set_const_time();
        let mut minus_one = prime.to_owned()?;
        minus_one.sub_word(1)?;
        minus_one.set_const_time();

        let mut g = n.to_owned()?;
        g.add_word(1)?;
        let mut half = Self {
            prime,
            squared,
            minus_one,
            h: BigNum::new()?,
        };
        let mut l = half.l_of_power(&g, ctx)?;
        half.h.mod_inverse(&l, &half.prime, ctx)?;
        l.clear();
        Ok(half)
    }

    /// Computes `L(x^(prime-1) mod prime^2)`, with `L(y) = (y - 1) / prime`.
    fn l_of_power(&self, x: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, PaillierError> {
        let mut base = BigNum::new()?;
        base.nnmod(x, &self.squared, ctx)?;
        let mut power = BigNum::new()?;
        power.mod_exp(&base, &self.minus_one, &self.squared, ctx)?;
        power.sub_word(1)?;
        let mut l = BigNum::new()?;
        l.checked_div(&power, &self.prime, ctx)?;
        base.clear();
        power.clear();
        Ok(l)
    }

    /// Computes `m mod prime` for ciphertext `c`.
    fn decrypt(&self, c: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, PaillierError> {
        let mut l = self.l_of_power(c, ctx)?;
        let mut m = BigNum::new()?;
        m.mod_mul(&l, &self.h, &self.prime, ctx)?;
        l.clear();
        Ok(m)
    }

    /// Draws a uniform element of the subgroup of `n`-th residues modulo `prime^2`,
    /// as `u^prime mod prime^2` for a uniform `u` in `[1, prime)`.
    ///
    /// `(Z/prime^2)^*` is cyclic of order `prime (prime - 1)`. Raising to `prime` and
    /// raising to `n = p q` both map it onto its subgroup of order `prime - 1`, because
    /// the other prime does not divide `prime - 1` when both primes have the same bit
    /// length. Both powers depend only on the base modulo `prime`. So `u^prime` has the
    /// distribution of `r^n mod prime^2` for a uniform `r` in `Z_n^*`, with an exponent
    /// half as long.
    fn randomizer(&self, ctx: &mut BigNumContext) -> Result<BigNum, PaillierError> {
        let mut base = random_nonzero_below(&self.prime)?;
        let mut value = BigNum::new()?;
        value.mod_exp(&base, &self.prime, &self.squared, ctx)?;
        base.clear();
        Ok(value)
    }

    fn clear(&mut self) {
        self.prime.clear();
        self.squared.clear();
        self.minus_one.clear();
        self.h.clear();
    }
}

impl PaillierSecretKey {
    /// Generates a key with two random 1024-bit primes, so that `n` has exactly 2048 bits.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL's prime generation or random source fails.
    pub fn generate() -> Result<Self, PaillierError> {
        let mut ctx = BigNumContext::new()?;
        loop {
            let mut p = BigNum::new()?;
            p.generate_prime(MODULUS_BITS / 2, false, None, None)?;
            let mut q = BigNum::new()?;
            q.generate_prime(MODULUS_BITS / 2, false, None, None)?;
            if p == q {
                continue;
            }
            let mut n = BigNum::new()?;
            n.checked_mul(&p, &q, &mut ctx)?;
            // OpenSSL sets the top two bits of each prime, so n has 2048 bits. The check
            // guards that assumption.
            if n.num_bits() != MODULUS_BITS {
                continue;
            }
            return Self::from_primes(p, q, n, &mut ctx);
        }
    }

    fn from_primes(
        p: BigNum,
        q: BigNum,
        n: BigNum,
        ctx: &mut BigNumContext,
    ) -> Result<Self, PaillierError> {
        let public = PaillierPublicKey::from_modulus(n)?;
        let p = Half::new(p, &public.n, ctx)?;
        let q = Half::new(q, &public.n, ctx)?;

        let mut q_inverse_mod_p = BigNum::new()?;
        q_inverse_mod_p.mod_inverse(&q.prime, &p.prime, ctx)?;
        let mut q_squared_inverse_mod_p_squared = BigNum::new()?;
        q_squared_inverse_mod_p_squared.mod_inverse(&q.squared, &p.squared, ctx)?;
        Ok(Self {
            public,
            p,
            q,
            q_inverse_mod_p,
            q_squared_inverse_mod_p_squared,
        })
    }

    /// Copies the key, for tests that share one key across runs.
    #[cfg(test)]
    pub(crate) fn try_clone(&self) -> Result<Self, PaillierError> {
        let mut ctx = BigNumContext::new()?;
        Self::from_primes(
            self.p.prime.to_owned()?,
            self.q.prime.to_owned()?,
            self.public.n.to_owned()?,
            &mut ctx,
        )
    }

    /// Returns the public key.
    pub fn public_key(&self) -> &PaillierPublicKey {
        &self.public
    }

    /// Decrypts a ciphertext to its plaintext in `[0, n)`.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn decrypt(
        &self,
        c: &Ciphertext,
        ctx: &mut BigNumContext,
    ) -> Result<BigNum, PaillierError> {
        let mut mp = self.p.decrypt(&c.0, ctx)?;
        let mut mq = self.q.decrypt(&c.0, ctx)?;
        let m = recombine(
            &mp,
            &mq,
            &self.p.prime,
            &self.q.prime,
            &self.q_inverse_mod_p,
            ctx,
        )?;
        mp.clear();
        mq.clear();
        Ok(m)
    }

    /// Computes one `r^n mod n^2` for a random `r` in `Z_n^*`, as the CRT combination of
    /// `u^p mod p^2` and `v^q mod q^2` for uniform `u < p` and `v < q`. These are uniform
    /// `n`-th residues modulo `p^2` and `q^2`, so the result has the distribution of
    /// `r^n`, with exponents half as long.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn randomizer(&self, ctx: &mut BigNumContext) -> Result<Randomizer, PaillierError> {
        let mut yp = self.p.randomizer(ctx)?;
        let mut yq = self.q.randomizer(ctx)?;
        let value = recombine(
            &yp,
            &yq,
            &self.p.squared,
            &self.q.squared,
            &self.q_squared_inverse_mod_p_squared,
            ctx,
        )?;
        yp.clear();
        yq.clear();
        Ok(Randomizer(value))
    }

    /// Computes `count` randomizers in parallel.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn randomizers(&self, count: usize) -> Result<Vec<Randomizer>, PaillierError> {
        (0..count)
            .into_par_iter()
            .map_init(BigNumContext::new, |ctx, _| {
                let ctx = ctx
                    .as_mut()
                    .map_err(|e| PaillierError::OpenSsl(e.clone()))?;
                self.randomizer(ctx)
            })
            .collect()
    }

    /// Encrypts `m mod n` with a given randomizer.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn encrypt_with(
        &self,
        plaintext: &BigNumRef,
        randomizer: Randomizer,
        ctx: &mut BigNumContext,
    ) -> Result<Ciphertext, PaillierError> {
        self.public.encrypt_with(plaintext, &randomizer, ctx)
    }

    /// Encrypts every plaintext in parallel, taking randomizers from `pool` first and
    /// computing the rest when the pool runs out.
    ///
    /// # Errors
    ///
    /// [`PaillierError::ForeignPool`] if the pool was made under another key, or
    /// [`PaillierError::OpenSsl`].
    pub fn encrypt_all(
        &self,
        plaintexts: &[BigNum],
        pool: &mut RandomizerPool,
    ) -> Result<Vec<Ciphertext>, PaillierError> {
        if pool.modulus != self.public.n {
            return Err(PaillierError::ForeignPool);
        }
        let mut randomizers = pool.take(plaintexts.len());
        let missing = plaintexts.len() - randomizers.len();
        randomizers.extend(self.randomizers(missing)?);

        plaintexts
            .par_iter()
            .zip(randomizers.into_par_iter())
            .map_init(BigNumContext::new, |ctx, (plaintext, randomizer)| {
                let ctx = ctx
                    .as_mut()
                    .map_err(|e| PaillierError::OpenSsl(e.clone()))?;
                self.encrypt_with(plaintext, randomizer, ctx)
            })
            .collect()
    }
}

impl Drop for PaillierSecretKey {
    fn drop(&mut self) {
        self.p.clear();
        self.q.clear();
        self.q_inverse_mod_p.clear();
        self.q_squared_inverse_mod_p_squared.clear();
    }
}

/// Randomizers computed ahead of the data under one key.
pub struct RandomizerPool {
    modulus: BigNum,
    values: Vec<Randomizer>,
}

impl RandomizerPool {
    /// Computes `count` randomizers under `key`, in parallel.
    ///
    /// # Errors
    ///
    /// [`PaillierError::OpenSsl`] if OpenSSL fails.
    pub fn generate(key: &PaillierSecretKey, count: usize) -> Result<Self, PaillierError> {
        Ok(Self {
            modulus: key.public.n.to_owned()?,
            values: key.randomizers(count)?,
        })
    }

    /// Returns the number of randomizers left.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Returns whether no randomizer is left.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Removes up to `count` randomizers.
    fn take(&mut self, count: usize) -> Vec<Randomizer> {
        let keep = self.values.len().saturating_sub(count);
        self.values.split_off(keep)
    }
}

/// Draws `r` uniformly from `[1, n)` until `gcd(r, n) = 1`, flagged for constant-time use.
fn random_unit(n: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, PaillierError> {
    let one = BigNum::from_u32(1)?;
    loop {
        let mut r = random_nonzero_below(n)?;
        let mut divisor = BigNum::new()?;
        divisor.gcd(&r, n, ctx)?;
        if divisor == one {
            return Ok(r);
        }
        r.clear();
    }
}

/// Draws `r` uniformly from `[1, bound)`, flagged for constant-time use.
fn random_nonzero_below(bound: &BigNumRef) -> Result<BigNum, PaillierError> {
    loop {
        let mut r = BigNum::new()?;
        bound.rand_range(&mut r)?;
        if r.num_bits() > 0 {
            r.set_const_time();
            return Ok(r);
        }
    }
}

/// Multiplies all values modulo `modulus`, in parallel chunks; the empty product is 1.
fn product_mod(values: &[&BigNumRef], modulus: &BigNumRef) -> Result<BigNum, PaillierError> {
    let partials: Vec<BigNum> = values
        .par_chunks(256)
        .map(|chunk| multiply_mod(chunk.iter().copied(), modulus))
        .collect::<Result<_, _>>()?;
    multiply_mod(partials.iter().map(|partial| partial.as_ref()), modulus)
}

fn multiply_mod<'a>(
    values: impl Iterator<Item = &'a BigNumRef>,
    modulus: &BigNumRef,
) -> Result<BigNum, PaillierError> {
    let mut ctx = BigNumContext::new()?;
    let mut product = BigNum::from_u32(1)?;
    for value in values {
        let mut next = BigNum::new()?;
        next.mod_mul(&product, value, modulus, &mut ctx)?;
        product = next;
    }
    Ok(product)
}

/// Recombines `x mod a` and `x mod b` (coprime `a`, `b`) into `x mod a b`, given
/// `b^-1 mod a`: `x = x_b + b ((x_a - x_b) b^-1 mod a)`.
fn recombine(
    residue_a: &BigNumRef,
    residue_b: &BigNumRef,
    a: &BigNumRef,
    b: &BigNumRef,
    b_inverse_mod_a: &BigNumRef,
    ctx: &mut BigNumContext,
) -> Result<BigNum, PaillierError> {
    let mut difference = BigNum::new()?;
    difference.mod_sub(residue_a, residue_b, a, ctx)?;
    let mut factor = BigNum::new()?;
    factor.mod_mul(&difference, b_inverse_mod_a, a, ctx)?;
    let mut lifted = BigNum::new()?;
    lifted.checked_mul(&factor, b, ctx)?;
    let mut value = BigNum::new()?;
    value.checked_add(&lifted, residue_b)?;
    difference.clear();
    factor.clear();
    lifted.clear();
    Ok(value)
}
