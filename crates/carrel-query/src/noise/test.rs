use std::fmt::Write;

use super::*;
use crate::Value;
use crate::exec::execute_without_noise_insecure;
use crate::test_support::fixtures::{description, policy, regions_csv};
use crate::test_support::{checked, register};

/// 200 persons with spends that are not on any coarse grid.
fn spend_csv(extra_person: bool) -> String {
    let mut csv = String::from("id,region,age,spend\n");
    for id in 1..=200 {
        let _ = writeln!(csv, "{id},north,30,{}", (id as f64) * 1.37 + 0.011);
    }
    if extra_person {
        let _ = writeln!(csv, "201,north,30,999.999");
    }
    csv
}

fn sum_grid(plan: &NoisePlan) -> i32 {
    plan.primitives
        .iter()
        .find_map(|p| match p {
            PrimitiveNoise::Sum(n) => Some(n.grid_exponent),
            PrimitiveNoise::Count(_) => None,
        })
        .expect("the query has a sum")
}

#[tokio::test]
async fn released_values_lie_on_one_grid_for_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT COUNT(*) AS n, SUM(spend) AS total FROM t";
    let mut plans = Vec::new();
    let mut exacts = Vec::new();
    for (name, extra) in [("a", false), ("b", true)] {
        let table = register(dir.path(), name, &spend_csv(extra), &description());
        let query = checked(sql, &table, &policy()).await;
        exacts.push(execute_without_noise_insecure(&query).await.unwrap());
        plans.push(NoisePlan::new(&query, 0.5).unwrap());
    }
    let j = sum_grid(&plans[0]);
    assert_eq!(
        j,
        sum_grid(&plans[1]),
        "the grid must not depend on the data"
    );
    let step = exp2(j);

    for (plan, exact) in plans.iter().zip(&exacts) {
        let mechanisms = plan.mechanisms().unwrap();
        let mut distinct_sums = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let release = mechanisms.release(exact).unwrap();
            assert_eq!(
                release.rows.len(),
                1,
                "200 persons are far above the threshold"
            );
            let row = &release.rows[0];
            assert!(
                matches!(row[0], Value::Integer(_)),
                "count {:?} is not an integer",
                row[0]
            );
            let Value::Float(total) = row[1] else {
                panic!("sum {:?} is not a float", row[1]);
            };
            assert!(total.is_finite());
            assert_eq!(
                (total / step).fract(),
                0.0,
                "{total} is not a multiple of 2^{j}"
            );
            distinct_sums.insert(total.to_bits());
        }
        assert!(distinct_sums.len() > 100, "the sum is not noisy");
    }
}

#[tokio::test]
async fn count_noise_fits_discrete_laplace() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &spend_csv(false), &description());
    let query = checked("SELECT COUNT(*) FROM t", &table, &policy()).await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let plan = NoisePlan::new(&query, 0.5).unwrap();
    let GroupSize::CountRows(_) = plan.group_size else {
        panic!("with k = 1 and COUNT(*) the count decides suppression");
    };
    let PrimitiveNoise::Count(noise) = &plan.primitives[0] else {
        panic!("COUNT(*) has count noise");
    };
    assert_eq!(
        noise.scale,
        2.0_f64.next_up(),
        "one measurement at 0.5 with k = 1"
    );

    let mechanisms = plan.mechanisms().unwrap();
    let samples = 20_000;
    let mut errors = Vec::with_capacity(samples);
    for _ in 0..samples {
        let release = mechanisms.release(&exact).unwrap();
        let Value::Integer(n) = release.rows[0][0] else {
            panic!("count is an integer")
        };
        errors.push((n - 200) as f64);
    }
    let mean = errors.iter().sum::<f64>() / samples as f64;
    let variance = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / samples as f64;
    let alpha = (-1.0 / noise.scale).exp();
    let expected_variance = 2.0 * alpha / (1.0 - alpha).powi(2);
    // Tolerances are about ten standard errors, so a correct sampler fails with
    // negligible probability.
    assert!(mean.abs() < 0.25, "mean error {mean}");
    assert!(
        (variance / expected_variance - 1.0).abs() < 0.15,
        "variance {variance}, expected {expected_variance}"
    );
    let half_width = ci95_steps(noise.scale);
    let outside = errors.iter().filter(|e| e.abs() > half_width).count() as f64 / samples as f64;
    assert!(
        outside < 0.05 + 0.02,
        "{outside} of errors outside the 95% interval"
    );
}

#[tokio::test]
async fn large_group_always_and_small_groups_never_released() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let query = checked(
        "SELECT region, COUNT(*) FROM t GROUP BY region",
        &table,
        &policy(),
    )
    .await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let plan = NoisePlan::new(&query, 1.0).unwrap();
    assert_eq!(plan.measurements, 1);
    assert_eq!(plan.threshold, 30, "9 + ceil(1 × ln(1 / 1e-9))");

    let mechanisms = plan.mechanisms().unwrap();
    for _ in 0..1000 {
        let release = mechanisms.release(&exact).unwrap();
        let regions: Vec<&Value> = release.rows.iter().map(|r| &r[0]).collect();
        assert_eq!(regions, vec![&Value::Text("north".into())]);
    }
}

#[tokio::test]
async fn epsilon_is_split_across_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let mut policy = policy();
    policy.max_rows_per_unit = 2;
    let query = checked(
        "SELECT region, COUNT(*), SUM(spend), AVG(spend) FROM t GROUP BY region",
        &table,
        &policy,
    )
    .await;
    // COUNT(*), SUM(spend), COUNT(spend) for AVG, and the distinct-person count.
    assert_eq!(query.measurement_count(), 4);
    let plan = NoisePlan::new(&query, 1.0).unwrap();
    let GroupSize::Persons(persons) = &plan.group_size else {
        panic!("k = 2 needs a separate person count");
    };
    // Share 0.25 and sensitivity 2 give scale 8.
    assert!((persons.scale - 8.0).abs() < 1e-9);
    let PrimitiveNoise::Sum(sum) = &plan.primitives[1] else {
        panic!("second is the sum")
    };
    // k × M / share = 2 × 1000 / 0.25, plus the grid's share.
    assert!(
        sum.scale >= 8000.0 && sum.scale < 8000.0 * 1.01,
        "sum scale {}",
        sum.scale
    );
}

#[tokio::test]
async fn invalid_epsilon_is_rejected_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let query = checked("SELECT COUNT(*) FROM t", &table, &policy()).await;
    for epsilon in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let rejection = query.check_epsilon(epsilon).unwrap_err();
        assert!(
            matches!(rejection, QueryRejection::InvalidEpsilon { .. }),
            "{epsilon}"
        );
    }
    // The file is gone, so a run that read data would fail differently.
    std::fs::remove_file(&table.parquet).unwrap();
    let error = crate::execute(&query, f64::NAN).await.unwrap_err();
    assert!(matches!(
        error,
        QueryError::Rejected(QueryRejection::InvalidEpsilon { .. })
    ));
}

#[test]
fn equal_share_never_exceeds_epsilon() {
    for epsilon in [0.1, 1.0, 0.3, 7.7, 1e-6] {
        for parts in 1..12 {
            let share = equal_share(epsilon, parts);
            assert!(exact(share) * RBig::from(parts) <= exact(epsilon));
            assert!(share > epsilon / parts as f64 * (1.0 - 1e-12));
        }
    }
}

#[tokio::test]
async fn extreme_epsilons_keep_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let query = checked(
        "SELECT region, COUNT(*), SUM(spend) FROM t GROUP BY region",
        &table,
        &policy(),
    )
    .await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let north = exact
        .groups
        .iter()
        .find(|g| g.keys[0] == Value::Text("north".into()))
        .unwrap();
    let crate::exec::ExactCell::Sum(north_sum) = &north.cells[2] else {
        panic!("sum cell")
    };

    // A threshold beyond i64::MAX would let saturated noisy counts through.
    let rejection = NoisePlan::new(&query, 1e-200).unwrap_err();
    assert!(
        matches!(rejection, QueryRejection::InvalidEpsilon { .. }),
        "{rejection}"
    );

    // At a large epsilon the sum is still near its exact value: the grid does not shrink
    // with the noise, so the sum does not saturate.
    for epsilon in [1e3, 1e9, 1e300] {
        let plan = NoisePlan::new(&query, epsilon).unwrap();
        let release = plan.mechanisms().unwrap().release(&exact).unwrap();
        assert_eq!(release.rows.len(), 1, "epsilon {epsilon}");
        let Value::Float(sum) = release.rows[0][2] else {
            panic!("sum is a float")
        };
        let error = (sum - north_sum.to_f64()).abs();
        // Noise beyond 30 scales has probability e^-30; rounding adds at most a grid step.
        let noise = &release.aggregates[1];
        let bound = 30.0 * noise.noise_scale + noise.grid;
        assert!(error < bound, "epsilon {epsilon}: {sum} vs {north_sum}");
        assert!(
            bound < 100.0,
            "epsilon {epsilon}: the bound {bound} is loose"
        );
    }
}
