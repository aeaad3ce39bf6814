//! Closed form vs enumeration vs sampled sets, per group, for the polychromatic objective.
//! Enumeration is measured only where C(N, n) fits under the default limit.
//! Run: `cargo bench -p setrl --bench advantages`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use setrl::{DEFAULT_MAX_SETS, Group, Method, Objective, Strategy, enumerate, sampled};
use std::hint::black_box;

/// Sets drawn per generation by the sampled estimator in this benchmark.
const SAMPLED_SETS: usize = 16;

/// A group shaped like real training data: 0/1 rewards, a few strategies, some degenerate.
fn group(big_n: usize) -> Group {
    let rewards = (0..big_n)
        .map(|i| if (i * 7) % 3 == 0 { 0.0 } else { 1.0 })
        .collect();
    let strategies = (0..big_n)
        .map(|i| {
            if i % 11 == 5 {
                Strategy::Degenerate
            } else {
                Strategy::Cluster((i * 5 % 13) as i64)
            }
        })
        .collect();
    Group::new(rewards, strategies).expect("valid benchmark group")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("polychromatic");
    for (big_n, n) in [(8usize, 4usize), (16, 8), (64, 8), (256, 16)] {
        let group = group(big_n);
        let label = format!("N={big_n},n={n}");
        g.bench_with_input(BenchmarkId::new("exact", &label), &group, |b, grp| {
            b.iter(|| Objective::Polychromatic.exact(black_box(grp), n).unwrap())
        });
        // The same through the one dispatch the trainer uses (adds the finiteness check).
        g.bench_with_input(BenchmarkId::new("method", &label), &group, |b, grp| {
            b.iter(|| Method::polyepo(n).compute(black_box(grp)).unwrap())
        });
        if enumerate(&Objective::Polychromatic, &group, n, DEFAULT_MAX_SETS).is_ok() {
            g.bench_with_input(BenchmarkId::new("enumerate", &label), &group, |b, grp| {
                b.iter(|| {
                    enumerate(
                        &Objective::Polychromatic,
                        black_box(grp),
                        n,
                        DEFAULT_MAX_SETS,
                    )
                    .unwrap()
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("sampled-16", &label), &group, |b, grp| {
            b.iter(|| {
                sampled(
                    &Objective::Polychromatic,
                    black_box(grp),
                    n,
                    SAMPLED_SETS,
                    7,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
