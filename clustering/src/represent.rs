//! Choosing the title that stands for a cluster.

use crate::minhash::{jaccard_counts, shingle_hashes_of_normalized};
use crate::text;

/// The most central title of a cluster: the one with the highest average exact
/// Jaccard similarity of its shingle set to the other titles. Ties go to the
/// shortest title (in characters, after trimming), then to the
/// lexicographically smallest. `None` when every title is blank.
///
/// The result does not depend on the order of `titles`: similarities are
/// summed as fixed-point integers, so no floating-point rounding differs
/// between orders. Cost is quadratic in the number of titles; pass a bounded
/// sample (a few hundred) for large clusters.
pub fn representative_title(titles: &[&str]) -> Option<String> {
    let titles: Vec<&str> = titles
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    let sets: Vec<Vec<u64>> = titles
        .iter()
        .map(|t| shingle_hashes_of_normalized(&text::normalize(t)))
        .collect();
    let mut best: Option<(u64, usize, &str)> = None;
    for (i, title) in titles.iter().enumerate() {
        let score: u64 = sets
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, other)| match jaccard_counts(&sets[i], other) {
                (_, 0) => 0,
                (inter, union) => ((inter as u64) << 32) / union as u64,
            })
            .sum();
        let len = title.chars().count();
        let better = match best {
            None => true,
            Some((s, l, t)) => score > s || (score == s && (len < l || (len == l && *title < t))),
        };
        if better {
            best = Some((score, len, title));
        }
    }
    best.map(|(_, _, t)| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_central_title_in_any_order() {
        let titles = [
            "Please let the taskbar group windows by project",
            "taskbar: group open windows per project",
            "Group taskbar windows by project",
            "I would like the taskbar to group windows of the same project, like in our old system",
        ];
        let expected = "Group taskbar windows by project";
        assert_eq!(representative_title(&titles).as_deref(), Some(expected));
        let mut reversed = titles;
        reversed.reverse();
        assert_eq!(representative_title(&reversed).as_deref(), Some(expected));
        let mut rotated = titles;
        rotated.rotate_left(1);
        assert_eq!(representative_title(&rotated).as_deref(), Some(expected));
    }

    #[test]
    fn ties_go_to_shortest_then_lexicographic() {
        // Same shingles, so equal scores: the shortest wins.
        assert_eq!(
            representative_title(&["Taskbar grouping!!", "taskbar grouping", "TASKBAR GROUPING"])
                .as_deref(),
            Some("TASKBAR GROUPING")
        );
        // No overlap at all: shortest, then lexicographic.
        assert_eq!(
            representative_title(&["打印机驱动安装太慢", "VPN", "SM2"]).as_deref(),
            Some("SM2")
        );
        assert_eq!(
            representative_title(&["SM2", "VPN", "打印机驱动安装太慢"]).as_deref(),
            Some("SM2")
        );
    }

    #[test]
    fn blank_and_single() {
        assert_eq!(representative_title(&[]), None);
        assert_eq!(representative_title(&["  ", ""]), None);
        assert_eq!(
            representative_title(&[" 打印机驱动安装太慢 "]).as_deref(),
            Some("打印机驱动安装太慢")
        );
    }
}
