//! Which replica serves which part of a split answer: rendezvous hashing over the parts' keys
//! (the file each part mostly reads), with bounded loads so that no replica gets much more than
//! its share of the rows.
//!
//! Parts are placed heaviest first. Each goes to the highest-ranked replica for its key that still
//! has room under an equal share of the rows, else to the least loaded: so a file's parts keep
//! going to the same replica (whose local tier keeps it hot) while the membership holds, and no
//! replica gets more than its share plus one part. The part's second location is the next replica
//! in its ranking.

use rendezvous_hash::RendezvousNodes;

/// How far past an equal share a replica may be filled by preference (rounding room only: the
/// slowest replica sets the time of the whole answer).
const SLACK: f64 = 1.01;

/// The replica that owns `key` among `members` (rendezvous hashing, no load bound): the one
/// whose local tier keeps that file first.
pub fn owner<'a>(key: &str, members: &'a [String]) -> Option<&'a str> {
    ranking(key, members).first().map(|&m| members[m].as_str())
}

/// `members` (their indexes) from the highest rendezvous score for `key` down.
fn ranking(key: &str, members: &[String]) -> Vec<usize> {
    let mut nodes = RendezvousNodes::default();
    for m in members {
        nodes.insert(m.as_str());
    }
    let ranked = nodes.calc_candidates(&key).filter_map(|n| members.iter().position(|m| m == *n)).collect();
    ranked
}

/// The ranked locations of each part: `parts` are (key, rows); `members` the live replicas.
/// Each list holds the owner first, then another replica (when there is one).
pub fn assign(parts: &[(String, u64)], members: &[String]) -> Vec<Vec<String>> {
    let total: u64 = parts.iter().map(|p| p.1).sum();
    let cap = total as f64 / members.len().max(1) as f64 * SLACK;
    let mut load = vec![0u64; members.len()];
    // Heaviest first (ties in order), so the big parts are placed while every replica has room.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(parts[i].1));
    let mut out = vec![Vec::new(); parts.len()];
    for i in order {
        let (key, rows) = &parts[i];
        let ranked = ranking(key, members);
        let owner = ranked
            .iter()
            .copied()
            .find(|&m| (load[m] + rows) as f64 <= cap)
            .or_else(|| ranked.iter().copied().min_by_key(|&m| load[m]));
        let Some(owner) = owner else { continue };
        load[owner] += rows;
        out[i].push(members[owner].clone());
        if let Some(&second) = ranked.iter().find(|&&m| m != owner) {
            out[i].push(members[second].clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}:50051")).collect()
    }

    #[test]
    fn equal_months_are_shared_equally_with_a_distinct_second() {
        let parts: Vec<(String, u64)> = (1..=12).map(|m| (format!("yellow_2024-{m:02}.parquet"), 1000)).collect();
        let out = assign(&parts, &members(3));
        for m in members(3) {
            assert_eq!(out.iter().filter(|l| l[0] == m).count(), 4, "{out:?}");
        }
        assert!(out.iter().all(|l| l.len() == 2 && l[0] != l[1]));
    }

    #[test]
    fn unequal_parts_share_out_within_one_part_and_owners_are_stable() {
        let rows = [14_000u64, 13_000, 12_500, 3_000, 2_900, 2_800, 2_700, 2_600, 2_500, 2_400];
        let parts: Vec<(String, u64)> = rows.iter().enumerate().map(|(i, r)| (format!("f{i}"), *r)).collect();
        let out = assign(&parts, &members(3));
        let total: u64 = rows.iter().sum();
        for m in members(3) {
            let load: u64 = out.iter().zip(&rows).filter(|(l, _)| l[0] == m).map(|(_, r)| r).sum();
            assert!(load as f64 <= total as f64 / 3.0 * SLACK + 14_000.0, "{m}: {load} of {total}");
        }
        assert_eq!(out, assign(&parts, &members(3)));
        // Equal parts that do not divide evenly: 8, 8 and 7.
        let equal: Vec<(String, u64)> = (0..23).map(|i| (format!("day-{i}"), 100)).collect();
        let out = assign(&equal, &members(3));
        let mut counts: Vec<usize> = members(3).iter().map(|m| out.iter().filter(|l| &l[0] == m).count()).collect();
        counts.sort();
        assert_eq!(counts, [7, 8, 8]);
    }

    #[test]
    fn a_lost_member_moves_only_its_parts_and_one_member_takes_all() {
        let parts: Vec<(String, u64)> = (0..30).map(|i| (format!("file-{i}"), 1)).collect();
        let all = members(3);
        let before = assign(&parts, &all);
        let fewer: Vec<String> = all[..2].to_vec();
        let after = assign(&parts, &fewer);
        assert!(after.iter().all(|l| l[0] != all[2]));
        let kept = before.iter().zip(&after).filter(|(b, a)| b[0] != all[2] && b[0] == a[0]).count();
        let owned_by_survivors = before.iter().filter(|b| b[0] != all[2]).count();
        // Bounded loads move a few more than the lost member's own parts, not most of them.
        assert!(kept * 10 >= owned_by_survivors * 7, "kept {kept} of {owned_by_survivors}");
        let alone = assign(&parts, &all[..1]);
        assert!(alone.iter().all(|l| l == &vec![all[0].clone()]));
    }
}
