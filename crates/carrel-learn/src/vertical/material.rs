//! Correlated randomness of one step: what each party draws from its seed, and the
//! corrections that the dealer computes for the host.
//!
//! Every value comes from a labelled stream (see [`super::prg`]). The guest draws all of its
//! material from its own seed. The host draws its free values from its seed and receives,
//! per step, the values that must correlate with the guest's: the second shares of the
//! products and of the random masks. The dealer has both seeds and never sees data.

use super::VerticalError;
use super::plan::{BREAKPOINTS, Plan};
use super::prg::{Seed, Stream};
use super::ring::{Reader, Role, put_u64s, put_u128s};

/// Number of AND gates, each over a whole bit vector, in one comparison tree of 64 leaves.
pub const AND_GATES: usize = 125;

/// Step number under which the fixed masks of the feature matrices are drawn.
pub const MASK_STEP: u64 = u64::MAX;

/// Comparisons in a step of `rows` rows, one per row and breakpoint.
pub fn comparisons(rows: usize) -> usize {
    rows * BREAKPOINTS.len()
}

/// 64-bit words of a bit vector over `count` elements.
pub fn words(count: usize) -> usize {
    count.div_ceil(64)
}

/// Draws the fixed additive mask of `role`'s feature matrix: `rows * columns` elements.
pub fn matrix_mask(seed: &Seed, plan: &Plan, role: Role) -> Vec<u128> {
    Stream::open(seed, MASK_STEP, "matrix").u128s(plan.rows * plan.columns(role))
}

/// One party's material for one step of `rows` rows.
#[derive(Debug, Clone)]
pub struct StepMaterial {
    /// Random vector this party masks its share with in the forward product where it is the
    /// vector holder: one element per column of the peer's matrix.
    pub forward_b: Vec<u128>,
    /// Share of `A_own[B] * b_peer`, the forward product on this party's own matrix.
    pub forward_own_c: Vec<u128>,
    /// Share of `A_peer[B] * b_own`, the forward product on the peer's matrix.
    pub forward_peer_c: Vec<u128>,
    /// Random vector over the rows for the backward product on the peer's matrix.
    pub backward_b: Vec<u128>,
    /// Share of `A_own[B]^T * b_peer`.
    pub backward_own_c: Vec<u128>,
    /// Share of `A_peer[B]^T * b_own`.
    pub backward_peer_c: Vec<u128>,
    /// Share of the random comparison masks `r`, in Z(2^64).
    pub compare_r: Vec<u64>,
    /// XOR shares of the bits of `r`: 64 bit vectors, bit 0 first.
    pub compare_bits: Vec<Vec<u64>>,
    /// XOR shares of the AND triples `(a, b, a AND b)`, one per gate.
    pub and_triples: Vec<[Vec<u64>; 3]>,
    /// XOR share of the random bits for the conversion of bits into ring elements.
    pub convert_bits: Vec<u64>,
    /// Additive share of the same random bits.
    pub convert_ring: Vec<u128>,
    /// Random ring elements `b`, one per comparison, that mask the multiplicand of the
    /// selection `bit * y`.
    pub select_b: Vec<u128>,
    /// Additive share of `rho * b`, with `rho` the random bit of the conversion.
    pub select_c: Vec<u128>,
    /// Guest: random `a` over the rows; host: random `b`; for the labels-times-share product.
    pub dot_mask: Vec<u128>,
    /// Share of `Σ a_i b_i`.
    pub dot_c: u128,
}

struct Draws {
    seed: Seed,
    step: u64,
}

impl Draws {
    fn u128s(&self, label: &str, count: usize) -> Vec<u128> {
        Stream::open(&self.seed, self.step, label).u128s(count)
    }

    fn u64s(&self, label: &str, count: usize) -> Vec<u64> {
        Stream::open(&self.seed, self.step, label).u64s(count)
    }

    fn bit_vectors(&self, label: &str, vectors: usize, words: usize) -> Vec<Vec<u64>> {
        let flat = self.u64s(label, vectors * words);
        if words == 0 {
            return vec![Vec::new(); vectors];
        }
        flat.chunks(words).map(<[u64]>::to_vec).collect()
    }
}

/// The values a party draws from its own seed, before any correction.
struct Free {
    forward_b: Vec<u128>,
    backward_b: Vec<u128>,
    compare_r: Vec<u64>,
    and_a: Vec<Vec<u64>>,
    and_b: Vec<Vec<u64>>,
    convert_bits: Vec<u64>,
    select_b: Vec<u128>,
    dot_mask: Vec<u128>,
}

fn free(seed: &Seed, step: u64, plan: &Plan, role: Role, rows: usize) -> Free {
    let d = Draws { seed: *seed, step };
    let n = comparisons(rows);
    let w = words(n);
    Free {
        forward_b: d.u128s("forward.b", plan.columns(role.peer())),
        backward_b: d.u128s("backward.b", rows),
        compare_r: d.u64s("compare.r", n),
        and_a: d.bit_vectors("and.a", AND_GATES, w),
        and_b: d.bit_vectors("and.b", AND_GATES, w),
        convert_bits: d.u64s("convert.bits", w),
        select_b: d.u128s("select.b", n),
        dot_mask: d.u128s("dot.mask", rows),
    }
}

/// The guest's own draws of the shares that the host's corrections complete.
struct GuestShares {
    forward_own_c: Vec<u128>,
    forward_peer_c: Vec<u128>,
    backward_own_c: Vec<u128>,
    backward_peer_c: Vec<u128>,
    compare_bits: Vec<Vec<u64>>,
    and_c: Vec<Vec<u64>>,
    convert_ring: Vec<u128>,
    select_c: Vec<u128>,
    dot_c: u128,
}

fn guest_shares(seed: &Seed, step: u64, plan: &Plan, rows: usize) -> GuestShares {
    let d = Draws { seed: *seed, step };
    let n = comparisons(rows);
    let w = words(n);
    GuestShares {
        forward_own_c: d.u128s("forward.own.c", rows),
        forward_peer_c: d.u128s("forward.peer.c", rows),
        backward_own_c: d.u128s("backward.own.c", plan.columns(Role::Guest)),
        backward_peer_c: d.u128s("backward.peer.c", plan.columns(Role::Host)),
        compare_bits: d.bit_vectors("compare.bits", 64, w),
        and_c: d.bit_vectors("and.c", AND_GATES, w),
        convert_ring: d.u128s("convert.ring", n),
        select_c: d.u128s("select.c", n),
        dot_c: d.u128s("dot.c", 1)[0],
    }
}

fn assemble(free: Free, shares: GuestShares) -> StepMaterial {
    let and_triples = free
        .and_a
        .into_iter()
        .zip(free.and_b)
        .zip(shares.and_c)
        .map(|((a, b), c)| [a, b, c])
        .collect();
    StepMaterial {
        forward_b: free.forward_b,
        forward_own_c: shares.forward_own_c,
        forward_peer_c: shares.forward_peer_c,
        backward_b: free.backward_b,
        backward_own_c: shares.backward_own_c,
        backward_peer_c: shares.backward_peer_c,
        compare_r: free.compare_r,
        compare_bits: shares.compare_bits,
        and_triples,
        convert_bits: free.convert_bits,
        convert_ring: shares.convert_ring,
        select_b: free.select_b,
        select_c: shares.select_c,
        dot_mask: free.dot_mask,
        dot_c: shares.dot_c,
    }
}

/// Draws the guest's material for a step of `rows` rows, all from its seed.
pub fn guest_material(seed: &Seed, step: u64, plan: &Plan, rows: usize) -> StepMaterial {
    assemble(
        free(seed, step, plan, Role::Guest, rows),
        guest_shares(seed, step, plan, rows),
    )
}

/// Builds the host's material from its free draws and the dealer's `corrections` for the
/// step.
///
/// # Errors
///
/// [`VerticalError::MessageLength`] or [`VerticalError::TrailingBytes`] when the
/// corrections do not have the size the plan implies.
pub fn host_material(
    seed: &Seed,
    step: u64,
    plan: &Plan,
    rows: usize,
    corrections: &[u8],
) -> Result<StepMaterial, VerticalError> {
    let n = comparisons(rows);
    let w = words(n);
    let mut r = Reader::new(corrections, "dealer corrections");
    let shares = GuestShares {
        forward_own_c: r.u128s(rows)?,
        forward_peer_c: r.u128s(rows)?,
        backward_own_c: r.u128s(plan.columns(Role::Host))?,
        backward_peer_c: r.u128s(plan.columns(Role::Guest))?,
        compare_bits: (0..64).map(|_| r.u64s(w)).collect::<Result<_, _>>()?,
        and_c: (0..AND_GATES)
            .map(|_| r.u64s(w))
            .collect::<Result<_, _>>()?,
        convert_ring: r.u128s(n)?,
        select_c: r.u128s(n)?,
        dot_c: r.u128s(1)?[0],
    };
    r.finish()?;
    Ok(assemble(free(seed, step, plan, Role::Host, rows), shares))
}

/// An epoch's number and its batches of row indices.
type EpochOrder = (u32, std::sync::Arc<Vec<Vec<usize>>>);

/// Dealer of one training. It has both seeds and the plan, and computes the host's
/// corrections step by step.
pub struct Dealer {
    plan: Plan,
    guest_seed: Seed,
    host_seed: Seed,
    guest_mask: Vec<u128>,
    host_mask: Vec<u128>,
    /// The batches of the epoch served last, by epoch number.
    batches: std::sync::Mutex<Option<EpochOrder>>,
}

impl Dealer {
    /// Creates the dealer of a training with the parties' seeds.
    pub fn new(plan: Plan, guest_seed: Seed, host_seed: Seed) -> Self {
        let guest_mask = matrix_mask(&guest_seed, &plan, Role::Guest);
        let host_mask = matrix_mask(&host_seed, &plan, Role::Host);
        Self {
            plan,
            guest_seed,
            host_seed,
            guest_mask,
            host_mask,
            batches: std::sync::Mutex::new(None),
        }
    }

    /// Returns the batches of `epoch`, drawn once per epoch rather than once per step.
    pub(super) fn epoch_batches(&self, epoch: u32) -> std::sync::Arc<Vec<Vec<usize>>> {
        let mut cached = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some((drawn, batches)) if *drawn == epoch => batches.clone(),
            _ => {
                let batches = std::sync::Arc::new(self.plan.epoch_batches(epoch));
                *cached = Some((epoch, batches.clone()));
                batches
            }
        }
    }

    /// Returns the host's corrections for step `step`, which covers `batch` (row indices).
    pub fn corrections(&self, step: u64, batch: &[usize]) -> Vec<u8> {
        let plan = &self.plan;
        let rows = batch.len();
        let guest_free = free(&self.guest_seed, step, plan, Role::Guest, rows);
        let host_free = free(&self.host_seed, step, plan, Role::Host, rows);
        let guest = guest_shares(&self.guest_seed, step, plan, rows);
        let kg = plan.columns(Role::Guest);
        let kh = plan.columns(Role::Host);

        let mut out = Vec::new();
        // Forward product on the host's matrix: A_h[B] * b_guest. The host's share is
        // c - c_guest, where the guest drew c_guest as its "peer" share.
        let host_own = mat_vec(&self.host_mask, kh, batch, &guest_free.forward_b);
        put_u128s(&mut out, &sub(&host_own, &guest.forward_peer_c));
        // Forward product on the guest's matrix: A_g[B] * b_host.
        let guest_own = mat_vec(&self.guest_mask, kg, batch, &host_free.forward_b);
        put_u128s(&mut out, &sub(&guest_own, &guest.forward_own_c));
        // Backward products: A_h[B]^T * b_guest and A_g[B]^T * b_host.
        let host_back = mat_t_vec(&self.host_mask, kh, batch, &guest_free.backward_b);
        put_u128s(&mut out, &sub(&host_back, &guest.backward_peer_c));
        let guest_back = mat_t_vec(&self.guest_mask, kg, batch, &host_free.backward_b);
        put_u128s(&mut out, &sub(&guest_back, &guest.backward_own_c));
        // Bits of r = r_guest + r_host, XOR-shared.
        let r: Vec<u64> = guest_free
            .compare_r
            .iter()
            .zip(&host_free.compare_r)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        let bits = bit_slices(&r);
        for (bit, guest_bit) in bits.iter().zip(&guest.compare_bits) {
            let share: Vec<u64> = bit.iter().zip(guest_bit).map(|(a, b)| a ^ b).collect();
            put_u64s(&mut out, &share);
        }
        // AND triples: c_host = (a_g ^ a_h) & (b_g ^ b_h) ^ c_g.
        for gate in 0..AND_GATES {
            let share: Vec<u64> = (0..guest.and_c[gate].len())
                .map(|i| {
                    let a = guest_free.and_a[gate][i] ^ host_free.and_a[gate][i];
                    let b = guest_free.and_b[gate][i] ^ host_free.and_b[gate][i];
                    (a & b) ^ guest.and_c[gate][i]
                })
                .collect();
            put_u64s(&mut out, &share);
        }
        // Random bits rho = rho_g ^ rho_h as ring elements, additively shared, and shares of
        // rho * b for the selection.
        let n = comparisons(rows);
        let mut ring = Vec::with_capacity(n);
        let mut select = Vec::with_capacity(n);
        for e in 0..n {
            let word = e / 64;
            let rho = u128::from(
                ((guest_free.convert_bits[word] ^ host_free.convert_bits[word]) >> (e % 64)) & 1,
            );
            ring.push(rho.wrapping_sub(guest.convert_ring[e]));
            let b = guest_free.select_b[e].wrapping_add(host_free.select_b[e]);
            select.push(rho.wrapping_mul(b).wrapping_sub(guest.select_c[e]));
        }
        put_u128s(&mut out, &ring);
        put_u128s(&mut out, &select);
        // Labels-times-share: Σ a_i b_i with a from the guest and b from the host.
        let dot = guest_free
            .dot_mask
            .iter()
            .zip(&host_free.dot_mask)
            .fold(0u128, |acc, (a, b)| acc.wrapping_add(a.wrapping_mul(*b)));
        put_u128s(&mut out, &[dot.wrapping_sub(guest.dot_c)]);
        out
    }
}

/// Returns `M[B] * v` for a row-major matrix with `columns` columns.
pub fn mat_vec(matrix: &[u128], columns: usize, batch: &[usize], v: &[u128]) -> Vec<u128> {
    batch
        .iter()
        .map(|&row| {
            matrix[row * columns..(row + 1) * columns]
                .iter()
                .zip(v)
                .fold(0u128, |acc, (m, x)| acc.wrapping_add(m.wrapping_mul(*x)))
        })
        .collect()
}

/// Returns `M[B]^T * v` for a row-major matrix with `columns` columns.
pub fn mat_t_vec(matrix: &[u128], columns: usize, batch: &[usize], v: &[u128]) -> Vec<u128> {
    let mut out = vec![0u128; columns];
    for (&row, x) in batch.iter().zip(v) {
        for (acc, m) in out
            .iter_mut()
            .zip(&matrix[row * columns..(row + 1) * columns])
        {
            *acc = acc.wrapping_add(m.wrapping_mul(*x));
        }
    }
    out
}

/// Returns `a - b` element-wise.
pub fn sub(a: &[u128], b: &[u128]) -> Vec<u128> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect()
}

/// Returns the 64 bit vectors of `values`: vector `i` contains bit `i` of every value.
pub fn bit_slices(values: &[u64]) -> Vec<Vec<u64>> {
    let w = words(values.len());
    let mut slices = vec![vec![0u64; w]; 64];
    for (e, value) in values.iter().enumerate() {
        let (word, shift) = (e / 64, e % 64);
        let mut v = *value;
        while v != 0 {
            let bit = v.trailing_zeros() as usize;
            slices[bit][word] |= 1 << shift;
            v &= v - 1;
        }
    }
    slices
}

impl Dealer {
    /// Returns the plan the dealer serves.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}
