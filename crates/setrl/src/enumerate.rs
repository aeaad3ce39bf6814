//! Marginal set advantages by visiting every n-subset: the definition itself, for any
//! objective, when C(N, n) is small enough.

use crate::advantages::Advantages;
use crate::binomial::binomial_f64;
use crate::error::{Result, SetRlError};
use crate::group::Group;
use crate::objective::SetObjective;

/// Default cap on the number of sets [`enumerate`] visits: about a second of work for cheap
/// objectives.
pub const DEFAULT_MAX_SETS: u64 = 1 << 22;

/// Exact marginal advantages by enumerating all C(N, n) sets: b = mean set score,
/// A_i = mean over the sets containing i of (s_S − b).
///
/// # Errors
/// [`SetRlError::InvalidSetSize`], or [`SetRlError::TooManySets`] when C(N, n) > `max_sets`.
pub fn enumerate<O: SetObjective + ?Sized>(
    objective: &O,
    group: &Group,
    set_size: usize,
    max_sets: u64,
) -> Result<Advantages> {
    group.check_set_size(set_size)?;
    let big_n = group.len();
    let sets = binomial_f64(big_n, set_size);
    if sets > max_sets as f64 {
        return Err(SetRlError::TooManySets {
            group_size: big_n,
            set_size,
            sets,
            limit: max_sets,
        });
    }
    let mut total = 0.0;
    let mut containing = vec![0.0; big_n];
    let mut members: Vec<usize> = (0..set_size).collect();
    loop {
        let score = objective.score(group, &members);
        total += score;
        for &j in &members {
            containing[j] += score;
        }
        if !next_combination(&mut members, big_n) {
            break;
        }
    }
    let baseline = total / sets;
    // Each generation lies in C(N − 1, n − 1) = n/N · C(N, n) sets.
    let per_generation = sets * set_size as f64 / big_n as f64;
    let advantages = containing
        .iter()
        .map(|s| s / per_generation - baseline)
        .collect();
    Ok(Advantages {
        advantages,
        baseline,
    })
}

/// Advances `members` (ascending indices into 0..n_items) to the next combination in
/// lexicographic order; false after the last one.
fn next_combination(members: &mut [usize], n_items: usize) -> bool {
    let k = members.len();
    for pos in (0..k).rev() {
        if members[pos] < n_items - k + pos {
            members[pos] += 1;
            for next in pos + 1..k {
                members[next] = members[next - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_combination_once() {
        let mut members = vec![0, 1];
        let mut seen = vec![members.clone()];
        while next_combination(&mut members, 4) {
            seen.push(members.clone());
        }
        assert_eq!(
            seen,
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
    }
}
