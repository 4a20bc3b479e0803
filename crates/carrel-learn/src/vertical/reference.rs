//! The training that the secret-shared protocol computes, in floating point on pooled
//! columns: the same schedule, optimiser and piecewise-linear sigmoid. Tests compare the
//! protocol with it, and it shows what the approximation of the sigmoid costs.

use super::plan::{Piecewise, Plan};

/// Trains on pooled rows: `guest` (row-major, `plan.guest_features` columns), `host`
/// (`plan.host_features` columns) and `labels`. Returns the guest's weights with the
/// intercept last, the host's weights and the loss per epoch.
pub fn train(
    plan: &Plan,
    guest: &[f64],
    host: &[f64],
    labels: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let kg = plan.guest_features;
    let kh = plan.host_features;
    let sigmoid = Piecewise::sigmoid();
    let softplus = Piecewise::softplus();
    let mut wg = vec![0.0; kg + 1];
    let mut wh = vec![0.0; kh];
    let mut vg = vec![0.0; kg + 1];
    let mut vh = vec![0.0; kh];
    let lambda = plan.lambda();
    let mut losses = Vec::new();
    let mut stale = 0;
    for epoch in 0..plan.epochs {
        let mut loss = 0.0;
        for batch in plan.epoch_batches(epoch) {
            let lg: Vec<f64> = wg
                .iter()
                .zip(&vg)
                .map(|(w, v)| w + plan.momentum * v)
                .collect();
            let lh: Vec<f64> = wh
                .iter()
                .zip(&vh)
                .map(|(w, v)| w + plan.momentum * v)
                .collect();
            let mut gg = vec![0.0; kg + 1];
            let mut gh = vec![0.0; kh];
            for &row in &batch {
                let xg = &guest[row * kg..(row + 1) * kg];
                let xh = &host[row * kh..(row + 1) * kh];
                let z =
                    crate::logistic::dot(&lg[..kg], xg) + lg[kg] + crate::logistic::dot(&lh, xh);
                loss += softplus.eval(z) - labels[row] * z;
                let d = sigmoid.eval(z) - labels[row];
                for (g, x) in gg.iter_mut().zip(xg) {
                    *g += d * x;
                }
                gg[kg] += d;
                for (g, x) in gh.iter_mut().zip(xh) {
                    *g += d * x;
                }
            }
            let m = batch.len() as f64;
            for j in 0..=kg {
                let penalty = if j < kg { lambda * lg[j] } else { 0.0 };
                vg[j] = plan.momentum * vg[j] - plan.learning_rate * (gg[j] / m + penalty);
                wg[j] += vg[j];
            }
            for j in 0..kh {
                vh[j] = plan.momentum * vh[j] - plan.learning_rate * (gh[j] / m + lambda * lh[j]);
                wh[j] += vh[j];
            }
        }
        let loss = loss / plan.rows as f64;
        let best = losses.iter().copied().reduce(f64::min);
        if let (Some(rule), Some(previous)) = (plan.early_stopping, best) {
            let previous: f64 = previous;
            if (previous - loss) / previous.abs().max(f64::MIN_POSITIVE)
                < rule.min_relative_improvement
            {
                stale += 1;
            } else {
                stale = 0;
            }
            losses.push(loss);
            if stale >= rule.patience {
                break;
            }
        } else {
            losses.push(loss);
        }
    }
    (wg, wh, losses)
}
