//! One party's side of the training. The same code runs at the guest and at the host in
//! lockstep, and each exchange sends this party's message and receives the peer's.

use serde::{Deserialize, Serialize};

use super::material::{
    self, AND_GATES, StepMaterial, bit_slices, comparisons, mat_t_vec, mat_vec, words,
};
use super::plan::{BREAKPOINTS, Piecewise, Plan};
use super::prg::Seed;
use super::ring::{
    self, CONST_BITS, FRAC_BITS, Reader, Role, encode, encode_constant, public_share, put_u64s,
    put_u128s, truncate, truncate_all,
};
use super::{Channel, Correlation, VerticalError};

/// Fractional bits of the penalty's factor in the update. At 2^-56 the factor of a plan
/// with ten million rows keeps eight significant digits. A weight times the factor stays
/// below 2^100, clear of the ring's half.
const DECAY_BITS: u32 = 56;

/// State that a party keeps between epochs, from which [`Party::resume`] continues training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epochs_done: u32,
    /// This party's shares of the guest's weights (intercept last) and of the host's weights.
    pub weights: [Vec<u128>; 2],
    /// This party's shares of the momentum of both weight vectors.
    pub velocity: [Vec<u128>; 2],
    /// Training loss of every completed epoch. Only the guest learns it, so the host keeps
    /// an empty list.
    pub losses: Vec<f64>,
    /// Epochs since the loss last improved enough.
    pub stale_epochs: u32,
    /// True when the early-stopping rule ended training.
    pub stopped_early: bool,
}

/// Progress of one epoch, as reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// Epoch just completed, from 1.
    pub epoch: u32,
    /// Epochs planned.
    pub epochs: u32,
    /// Mean training loss over the epoch (guest only).
    pub loss: Option<f64>,
}

/// The end of a training at one party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// This party's own weights in the clear: the guest's features then the intercept, or
    /// the host's features.
    pub weights: Vec<f64>,
    /// Training loss per epoch, at the guest only (empty at the host).
    pub losses: Vec<f64>,
    /// Epochs run.
    pub epochs: u32,
    /// True when early stopping ended training.
    pub stopped_early: bool,
}

/// A party of a vertical training.
pub struct Party {
    role: Role,
    plan: Plan,
    /// This party's features in fixed point, row-major. The guest's last column is all ones.
    own: Vec<u128>,
    own_mask: Vec<u128>,
    /// The peer's features minus the peer's mask, received once.
    peer_masked: Vec<u128>,
    labels: Vec<u8>,
    state: Checkpoint,
}

impl Party {
    /// Creates the guest with its features (row-major, `plan.guest_features` columns, the
    /// rows aligned with the host's) and labels in {0, 1}.
    ///
    /// # Errors
    ///
    /// [`VerticalError::ShapeMismatch`] when the sizes disagree with the plan,
    /// [`VerticalError::BadLabel`] for a label other than 0 or 1 and
    /// [`VerticalError::ValueOutOfRange`] for a feature that is not finite.
    pub fn guest(
        plan: Plan,
        seed: Seed,
        features: &[f64],
        labels: &[f64],
    ) -> Result<Self, VerticalError> {
        plan.check()?;
        check_shape(
            "guest features",
            features.len(),
            plan.rows * plan.guest_features,
        )?;
        check_shape("labels", labels.len(), plan.rows)?;
        let labels = labels
            .iter()
            .enumerate()
            .map(|(row, &y)| match y {
                0.0 => Ok(0u8),
                1.0 => Ok(1u8),
                _ => Err(VerticalError::BadLabel { row, value: y }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let one = encode(1.0)?;
        let mut own = Vec::with_capacity(plan.rows * plan.guest_columns());
        for row in 0..plan.rows {
            for &x in &features[row * plan.guest_features..(row + 1) * plan.guest_features] {
                own.push(encode(x)?);
            }
            own.push(one);
        }
        Ok(Self::new(Role::Guest, plan, seed, own, labels))
    }

    /// Creates the host with its features (row-major, `plan.host_features` columns).
    ///
    /// # Errors
    ///
    /// As [`Party::guest`], without labels.
    pub fn host(plan: Plan, seed: Seed, features: &[f64]) -> Result<Self, VerticalError> {
        plan.check()?;
        check_shape(
            "host features",
            features.len(),
            plan.rows * plan.host_features,
        )?;
        let own = features
            .iter()
            .map(|&x| encode(x))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(Role::Host, plan, seed, own, Vec::new()))
    }

    fn new(role: Role, plan: Plan, seed: Seed, own: Vec<u128>, labels: Vec<u8>) -> Self {
        let own_mask = material::matrix_mask(&seed, &plan, role);
        let state = Checkpoint {
            epochs_done: 0,
            weights: [
                vec![0; plan.columns(Role::Guest)],
                vec![0; plan.columns(Role::Host)],
            ],
            velocity: [
                vec![0; plan.columns(Role::Guest)],
                vec![0; plan.columns(Role::Host)],
            ],
            losses: Vec::new(),
            stale_epochs: 0,
            stopped_early: false,
        };
        Self {
            role,
            plan,
            own,
            own_mask,
            peer_masked: Vec::new(),
            labels,
            state,
        }
    }

    /// Returns this party's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Returns the state after the last completed epoch.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.state
    }

    /// Continues from a checkpoint that both parties saved after the same epoch.
    ///
    /// # Errors
    ///
    /// [`VerticalError::ShapeMismatch`] when the checkpoint's vectors do not fit the plan.
    pub fn resume(&mut self, checkpoint: Checkpoint) -> Result<(), VerticalError> {
        for owner in [Role::Guest, Role::Host] {
            let columns = self.plan.columns(owner);
            check_shape(
                "checkpoint weights",
                checkpoint.weights[owner.index()].len(),
                columns,
            )?;
            check_shape(
                "checkpoint velocity",
                checkpoint.velocity[owner.index()].len(),
                columns,
            )?;
        }
        self.state = checkpoint;
        Ok(())
    }

    /// Sends this party's masked features and receives the peer's. Run once per session,
    /// also after a resume.
    ///
    /// # Errors
    ///
    /// A channel error, or [`VerticalError::MessageLength`] for a reply of the wrong size.
    pub fn setup(&mut self, channel: &mut dyn Channel) -> Result<(), VerticalError> {
        let mut message = Vec::new();
        put_u128s(&mut message, &material::sub(&self.own, &self.own_mask));
        let reply = channel.exchange("setup", message)?;
        let mut reader = Reader::new(&reply, "masked features");
        self.peer_masked = reader.u128s(self.plan.rows * self.plan.columns(self.role.peer()))?;
        reader.finish()
    }

    /// Runs the remaining epochs, calling `progress` after each, then opens each party's
    /// own weights to it.
    ///
    /// `checkpointed` is called with the state after each epoch, before the next starts.
    ///
    /// # Errors
    ///
    /// Channel and dealer errors, and malformed messages.
    pub fn train(
        &mut self,
        channel: &mut dyn Channel,
        correlation: &mut dyn Correlation,
        progress: &mut dyn FnMut(EpochReport, &Checkpoint),
    ) -> Result<Outcome, VerticalError> {
        if self.peer_masked.is_empty() {
            self.setup(channel)?;
        }
        while self.state.epochs_done < self.plan.epochs && !self.state.stopped_early {
            let epoch = self.state.epochs_done;
            let mut loss_share = 0u128;
            for (index, batch) in self.plan.epoch_batches(epoch).into_iter().enumerate() {
                let step = self.plan.step_number(epoch, index);
                let material = correlation.material(step, &batch)?;
                loss_share = loss_share.wrapping_add(self.step(channel, &batch, &material)?);
            }
            let loss = self.finish_epoch(channel, loss_share)?;
            progress(
                EpochReport {
                    epoch: self.state.epochs_done,
                    epochs: self.plan.epochs,
                    loss,
                },
                &self.state,
            );
        }
        self.open_weights(channel)
    }

    /// Takes one gradient step over `batch` and returns this party's share of the batch's
    /// summed loss.
    fn step(
        &mut self,
        channel: &mut dyn Channel,
        batch: &[usize],
        material: &StepMaterial,
    ) -> Result<u128, VerticalError> {
        let role = self.role;
        let me = role.index();
        let peer = role.peer().index();
        let kme = self.plan.columns(role);
        let kpeer = self.plan.columns(role.peer());
        let m = batch.len();
        let momentum = encode_constant(self.plan.momentum);

        // Nesterov look-ahead: w + momentum * v.
        let look: [Vec<u128>; 2] = [0, 1].map(|o| {
            self.state.weights[o]
                .iter()
                .zip(&self.state.velocity[o])
                .map(|(w, v)| w.wrapping_add(ring::mul_public(*v, momentum, role)))
                .collect()
        });

        // Forward: z = X_g w_g + X_h w_h. This party has the vector share of the product
        // on the peer's matrix and opens it masked by forward_b.
        let mut message = Vec::new();
        put_u128s(
            &mut message,
            &material::sub(&look[peer], &material.forward_b),
        );
        let reply = channel.exchange("forward", message)?;
        let mut reader = Reader::new(&reply, "forward");
        let peer_open = reader.u128s(kme)?;
        reader.finish()?;
        let mut own_vector = look[me].clone();
        for (x, f) in own_vector.iter_mut().zip(&peer_open) {
            *x = x.wrapping_add(*f);
        }
        let mut z = mat_vec(&self.own, kme, batch, &own_vector);
        let peer_part = mat_vec(&self.peer_masked, kpeer, batch, &material.forward_b);
        for i in 0..m {
            z[i] = z[i]
                .wrapping_add(material.forward_own_c[i])
                .wrapping_add(peer_part[i])
                .wrapping_add(material.forward_peer_c[i]);
        }
        truncate_all(&mut z, role, FRAC_BITS);

        // z - t_j for every breakpoint, element j * m + i.
        let n = comparisons(m);
        let mut shifted = Vec::with_capacity(n);
        for t in BREAKPOINTS {
            let t = public_share(encode(t)?, role);
            shifted.extend(z.iter().map(|zi| zi.wrapping_sub(t)));
        }

        // Open the comparison inputs masked by r, and the labels-times-share masks.
        let mut message = Vec::new();
        let masked: Vec<u64> = shifted
            .iter()
            .zip(&material.compare_r)
            .map(|(x, r)| (*x as u64).wrapping_add(*r))
            .collect();
        put_u64s(&mut message, &masked);
        let dot_open: Vec<u128> = match role {
            Role::Guest => self
                .batch_labels(batch)
                .iter()
                .zip(&material.dot_mask)
                .map(|(y, a)| u128::from(*y).wrapping_sub(*a))
                .collect(),
            Role::Host => material::sub(&z, &material.dot_mask),
        };
        put_u128s(&mut message, &dot_open);
        let reply = channel.exchange("compare", message)?;
        let mut reader = Reader::new(&reply, "compare");
        let peer_masked = reader.u64s(n)?;
        let peer_dot = reader.u128s(m)?;
        reader.finish()?;
        let opened: Vec<u64> = masked
            .iter()
            .zip(&peer_masked)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();

        // Share of Σ y_i z_i: the guest's own part plus the product with the host's share.
        let labels_times_z = match role {
            Role::Guest => {
                let own: u128 = self
                    .batch_labels(batch)
                    .iter()
                    .zip(&z)
                    .filter(|(y, _)| **y == 1)
                    .fold(0u128, |acc, (_, zi)| acc.wrapping_add(*zi));
                let cross = material
                    .dot_mask
                    .iter()
                    .zip(&peer_dot)
                    .fold(0u128, |acc, (a, f)| acc.wrapping_add(a.wrapping_mul(*f)));
                own.wrapping_add(cross).wrapping_add(material.dot_c)
            }
            Role::Host => {
                let f = &dot_open;
                peer_dot
                    .iter()
                    .zip(f)
                    .zip(&material.dot_mask)
                    .fold(0u128, |acc, ((e, f), b)| {
                        acc.wrapping_add(e.wrapping_mul(*f))
                            .wrapping_add(e.wrapping_mul(*b))
                    })
                    .wrapping_add(material.dot_c)
            }
        };

        // Bits [z >= t_j], XOR-shared, then ReLU(z - t_j) = bit * (z - t_j).
        let at_least = self.compare(channel, &opened, material, n)?;
        let relu = self.select(channel, &at_least, &shifted, material)?;

        // Piecewise sigmoid and softplus, then the residual d = sigmoid - y.
        let sigmoid = Piecewise::sigmoid();
        let softplus = Piecewise::softplus();
        let sig_changes: Vec<u128> = sigmoid
            .slope_changes
            .iter()
            .map(|s| encode_constant(*s))
            .collect();
        let sp_changes: Vec<u128> = softplus
            .slope_changes
            .iter()
            .map(|s| encode_constant(*s))
            .collect();
        let sig_start = public_share(encode(sigmoid.start)?, role);
        let sp_start = public_share(encode(softplus.start)?, role);
        let labels = self.batch_labels(batch);
        let one = encode(1.0)?;
        let mut residual = Vec::with_capacity(m);
        let mut softplus_sum = 0u128;
        for i in 0..m {
            let mut sig = 0u128;
            let mut sp = 0u128;
            for j in 0..BREAKPOINTS.len() {
                let r = relu[j * m + i];
                sig = sig.wrapping_add(r.wrapping_mul(sig_changes[j]));
                sp = sp.wrapping_add(r.wrapping_mul(sp_changes[j]));
            }
            let sig = truncate(sig, role, CONST_BITS).wrapping_add(sig_start);
            let sp = truncate(sp, role, CONST_BITS).wrapping_add(sp_start);
            softplus_sum = softplus_sum.wrapping_add(sp);
            let label = match role {
                Role::Guest if labels[i] == 1 => one,
                _ => 0,
            };
            residual.push(sig.wrapping_sub(label));
        }
        let loss_share = softplus_sum.wrapping_sub(labels_times_z);

        // Backward: gradient X^T d for both weight vectors.
        let mut message = Vec::new();
        put_u128s(
            &mut message,
            &material::sub(&residual, &material.backward_b),
        );
        let reply = channel.exchange("backward", message)?;
        let mut reader = Reader::new(&reply, "backward");
        let peer_open = reader.u128s(m)?;
        reader.finish()?;
        let combined: Vec<u128> = residual
            .iter()
            .zip(&peer_open)
            .map(|(d, f)| d.wrapping_add(*f))
            .collect();
        let mut gradient: [Vec<u128>; 2] = [Vec::new(), Vec::new()];
        let mut own_grad = mat_t_vec(&self.own, kme, batch, &combined);
        for (g, c) in own_grad.iter_mut().zip(&material.backward_own_c) {
            *g = g.wrapping_add(*c);
        }
        let mut peer_grad = mat_t_vec(&self.peer_masked, kpeer, batch, &material.backward_b);
        for (g, c) in peer_grad.iter_mut().zip(&material.backward_peer_c) {
            *g = g.wrapping_add(*c);
        }
        truncate_all(&mut own_grad, role, FRAC_BITS);
        truncate_all(&mut peer_grad, role, FRAC_BITS);
        gradient[me] = own_grad;
        gradient[peer] = peer_grad;

        // v = momentum v - lr (g / m + lambda * look), then w = w + v. The intercept is
        // unpenalised.
        let step_size = encode_constant(self.plan.learning_rate / m as f64);
        // The penalty's factor lr / (C n) is small on large data, so it is carried at
        // DECAY_BITS rather than CONST_BITS.
        let decay = (self.plan.learning_rate * self.plan.lambda() * (1u64 << DECAY_BITS) as f64)
            .round_ties_even() as u128;
        for owner in 0..2 {
            let columns = self.state.weights[owner].len();
            for j in 0..columns {
                let penalised = !(owner == Role::Guest.index() && j + 1 == columns);
                let v = self.state.velocity[owner][j];
                let acc = v
                    .wrapping_mul(momentum)
                    .wrapping_sub(gradient[owner][j].wrapping_mul(step_size));
                let mut v = truncate(acc, role, CONST_BITS);
                if penalised {
                    let penalty = truncate(look[owner][j].wrapping_mul(decay), role, DECAY_BITS);
                    v = v.wrapping_sub(penalty);
                }
                self.state.velocity[owner][j] = v;
                self.state.weights[owner][j] = self.state.weights[owner][j].wrapping_add(v);
            }
        }
        Ok(loss_share)
    }

    fn batch_labels(&self, batch: &[usize]) -> Vec<u8> {
        match self.role {
            Role::Guest => batch.iter().map(|&row| self.labels[row]).collect(),
            Role::Host => vec![0; batch.len()],
        }
    }

    /// Computes XOR shares of `[x >= 0]` for every shared `x` whose masked value `x + r` is
    /// `opened`.
    ///
    /// `x = c - r`, so the sign bit of `x` is `c_63 ^ r_63 ^ [c mod 2^63 < r mod 2^63]`. The
    /// comparison of the public low bits of `c` with the shared bits of `r` runs as a tree of
    /// (greater, equal) pairs from the top bit down, one exchange per level.
    fn compare(
        &self,
        channel: &mut dyn Channel,
        opened: &[u64],
        material: &StepMaterial,
        n: usize,
    ) -> Result<Vec<u64>, VerticalError> {
        let role = self.role;
        let w = words(n);
        let public = bit_slices(opened);
        let guest = role == Role::Guest;
        // Leaves from bit 62 down to bit 0, then a neutral leaf (greater 0, equal 1).
        let mut segments: Vec<(Vec<u64>, Vec<u64>)> = (0..63)
            .rev()
            .map(|i| {
                let r = &material.compare_bits[i];
                let c = &public[i];
                let greater: Vec<u64> = r.iter().zip(c).map(|(r, c)| r & !c).collect();
                let equal: Vec<u64> = r
                    .iter()
                    .zip(c)
                    .map(|(r, c)| if guest { r ^ c ^ u64::MAX } else { *r })
                    .collect();
                (greater, equal)
            })
            .collect();
        segments.push((vec![0; w], vec![if guest { u64::MAX } else { 0 }; w]));
        let mut gate = 0;
        while segments.len() > 1 {
            let last = segments.len() == 2;
            let mut inputs: Vec<(&[u64], &[u64])> = Vec::new();
            for pair in segments.chunks(2) {
                let (high, low) = (&pair[0], &pair[1]);
                inputs.push((&high.1, &low.0));
                if !last {
                    inputs.push((&high.1, &low.1));
                }
            }
            let outputs = self.and_gates(channel, &inputs, &material.and_triples[gate..], w)?;
            gate += inputs.len();
            let mut next = Vec::with_capacity(segments.len() / 2);
            let mut out = outputs.into_iter();
            for pair in segments.chunks(2) {
                let carried = out.next().expect("one output per gate");
                let greater: Vec<u64> =
                    pair[0].0.iter().zip(&carried).map(|(a, b)| a ^ b).collect();
                let equal = if last {
                    Vec::new()
                } else {
                    out.next().expect("one output per gate")
                };
                next.push((greater, equal));
            }
            segments = next;
        }
        debug_assert_eq!(gate, AND_GATES);
        let below = &segments[0].0;
        let top_r = &material.compare_bits[63];
        let top_c = &public[63];
        // [x >= 0] = NOT sign = 1 ^ c_63 ^ r_63 ^ below. The guest adds the public terms.
        Ok((0..w)
            .map(|i| {
                let share = top_r[i] ^ below[i];
                if guest {
                    share ^ top_c[i] ^ u64::MAX
                } else {
                    share
                }
            })
            .collect())
    }

    /// Evaluates AND gates on XOR-shared bit vectors with one exchange.
    fn and_gates(
        &self,
        channel: &mut dyn Channel,
        inputs: &[(&[u64], &[u64])],
        triples: &[[Vec<u64>; 3]],
        w: usize,
    ) -> Result<Vec<Vec<u64>>, VerticalError> {
        let mut message = Vec::with_capacity(inputs.len() * w * 16);
        let mut opened = Vec::with_capacity(inputs.len());
        for ((x, y), [a, b, _]) in inputs.iter().zip(triples) {
            let d: Vec<u64> = x.iter().zip(a).map(|(x, a)| x ^ a).collect();
            let e: Vec<u64> = y.iter().zip(b).map(|(y, b)| y ^ b).collect();
            put_u64s(&mut message, &d);
            put_u64s(&mut message, &e);
            opened.push((d, e));
        }
        let reply = channel.exchange("and", message)?;
        let mut theirs = Reader::new(&reply, "and");
        let guest = self.role == Role::Guest;
        let mut outputs = Vec::with_capacity(inputs.len());
        for ([a, b, c], (d0, e0)) in triples.iter().zip(opened) {
            let (d1, e1) = (theirs.u64s(w)?, theirs.u64s(w)?);
            outputs.push(
                (0..w)
                    .map(|i| {
                        let d = d0[i] ^ d1[i];
                        let e = e0[i] ^ e1[i];
                        let z = c[i] ^ (d & b[i]) ^ (e & a[i]);
                        if guest { z ^ (d & e) } else { z }
                    })
                    .collect(),
            );
        }
        theirs.finish()?;
        Ok(outputs)
    }

    /// Multiplies each shared ring element `y` by an XOR-shared bit, in one exchange.
    ///
    /// With a random bit `rho` shared both ways and shares of `rho * b` for a random `b`,
    /// the parties open `beta = bit ^ rho` and `f = y - b`. Then `rho * y = f * rho + rho * b`,
    /// and `bit * y = beta * y + (1 - 2 beta) * rho * y`, all local once `beta` and `f` are
    /// public.
    fn select(
        &self,
        channel: &mut dyn Channel,
        bits: &[u64],
        y: &[u128],
        material: &StepMaterial,
    ) -> Result<Vec<u128>, VerticalError> {
        let masked: Vec<u64> = bits
            .iter()
            .zip(&material.convert_bits)
            .map(|(b, r)| b ^ r)
            .collect();
        let f = material::sub(y, &material.select_b);
        let mut message = Vec::new();
        put_u64s(&mut message, &masked);
        put_u128s(&mut message, &f);
        let reply = channel.exchange("select", message)?;
        let mut reader = Reader::new(&reply, "select");
        let peer_bits = reader.u64s(masked.len())?;
        let peer_f = reader.u128s(y.len())?;
        reader.finish()?;
        Ok((0..y.len())
            .map(|e| {
                let word = e / 64;
                let beta = ((masked[word] ^ peer_bits[word]) >> (e % 64)) & 1 == 1;
                let f = f[e].wrapping_add(peer_f[e]);
                let rho_y = f
                    .wrapping_mul(material.convert_ring[e])
                    .wrapping_add(material.select_c[e]);
                if beta {
                    y[e].wrapping_sub(rho_y)
                } else {
                    rho_y
                }
            })
            .collect())
    }

    /// Ends an epoch: the host sends its loss share to the guest, and the guest sends the
    /// host its decision on whether training goes on.
    fn finish_epoch(
        &mut self,
        channel: &mut dyn Channel,
        loss_share: u128,
    ) -> Result<Option<f64>, VerticalError> {
        let mut message = Vec::new();
        if self.role == Role::Host {
            put_u128s(&mut message, &[loss_share]);
        }
        let reply = channel.exchange("loss", message)?;
        let loss = if self.role == Role::Guest {
            let mut reader = Reader::new(&reply, "loss");
            let peer = reader.u128s(1)?[0];
            reader.finish()?;
            // The data term only: the L2 term would need the shared weights opened.
            Some(ring::decode(loss_share.wrapping_add(peer)) / self.plan.rows as f64)
        } else {
            Reader::new(&reply, "loss").finish()?;
            None
        };
        self.state.epochs_done += 1;
        let mut stop = false;
        if let Some(loss) = loss {
            // Improvement counts against the best epoch so far, as in horizontal training.
            let best = self.state.losses.iter().copied().reduce(f64::min);
            if let (Some(rule), Some(previous)) = (self.plan.early_stopping, best) {
                let improvement = (previous - loss) / previous.abs().max(f64::MIN_POSITIVE);
                if improvement < rule.min_relative_improvement {
                    self.state.stale_epochs += 1;
                } else {
                    self.state.stale_epochs = 0;
                }
                stop = self.state.stale_epochs >= rule.patience;
            }
            self.state.losses.push(loss);
        }
        let mut message = Vec::new();
        if self.role == Role::Guest {
            message.push(u8::from(stop));
        }
        let reply = channel.exchange("continue", message)?;
        if self.role == Role::Host {
            stop = match reply.as_slice() {
                [0] => false,
                [1] => true,
                _ => {
                    return Err(VerticalError::MessageLength {
                        what: "continue",
                        expected: 1,
                        found: reply.len(),
                    });
                }
            };
        }
        if stop && self.state.epochs_done < self.plan.epochs {
            self.state.stopped_early = true;
        }
        Ok(loss)
    }

    /// Opens each party's own weights to it.
    fn open_weights(&mut self, channel: &mut dyn Channel) -> Result<Outcome, VerticalError> {
        let me = self.role.index();
        let peer = self.role.peer().index();
        let mut message = Vec::new();
        put_u128s(&mut message, &self.state.weights[peer]);
        let reply = channel.exchange("open", message)?;
        let mut reader = Reader::new(&reply, "open");
        let peer_share = reader.u128s(self.state.weights[me].len())?;
        reader.finish()?;
        let weights = self.state.weights[me]
            .iter()
            .zip(&peer_share)
            .map(|(a, b)| ring::decode(a.wrapping_add(*b)))
            .collect();
        Ok(Outcome {
            weights,
            losses: self.state.losses.clone(),
            epochs: self.state.epochs_done,
            stopped_early: self.state.stopped_early,
        })
    }
}

fn check_shape(what: &'static str, found: usize, expected: usize) -> Result<(), VerticalError> {
    if found == expected {
        Ok(())
    } else {
        Err(VerticalError::ShapeMismatch {
            what,
            expected,
            found,
        })
    }
}
