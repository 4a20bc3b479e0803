use super::*;

/// A small data set where the label depends on both parties' features.
fn toy(rows: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut guest = Vec::new();
    let mut host = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..rows {
        let g = [next() * 2.0, next()];
        let h = [next() * 1.5, next(), next()];
        let z = 1.5 * g[0] - 0.8 * g[1] + 2.0 * h[0] - 1.0 * h[2] + 0.3 + 0.5 * next();
        guest.extend(g);
        host.extend(h);
        labels.push(if z > 0.0 { 1.0 } else { 0.0 });
    }
    (guest, host, labels)
}

#[test]
fn shared_training_matches_the_floating_point_reference() {
    let (guest, host, labels) = toy(300);
    let mut plan = Plan::with_defaults(300, 2, 3);
    plan.epochs = 4;
    let (g, h) = run_local(&plan, &guest, &labels, &host).unwrap();
    let (wg, wh, losses) = reference::train(&plan, &guest, &host, &labels);
    for (a, b) in g.weights.iter().zip(&wg) {
        assert!((a - b).abs() < 1e-3, "guest {a} vs {b}");
    }
    for (a, b) in h.weights.iter().zip(&wh) {
        assert!((a - b).abs() < 1e-3, "host {a} vs {b}");
    }
    assert_eq!(g.losses.len(), 4);
    for (a, b) in g.losses.iter().zip(&losses) {
        assert!((a - b).abs() < 1e-3, "loss {a} vs {b}");
    }
    assert!(h.losses.is_empty());
    assert!(losses[3] < losses[0]);
}
