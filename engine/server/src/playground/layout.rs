//! A layered drawing of a directed graph, in the manner of Sugiyama but kept small: layers by
//! breadth-first search from node 0; a link that skips layers passes through a narrow dummy
//! slot in each layer it crosses, so that it never runs through a box; rows ordered by the
//! barycentre of their neighbours (a few sweeps down and up); rows centred. Links that go back
//! up (loops) or along a row leave a box at the bottom, run in the gap below its row to a
//! lane right of every box, up the lane, and in the gap above their target's row into its top:
//! they cross no box either.
//!
//! Every node is a box `NODE_WIDTH` x `NODE_HEIGHT`; coordinates are pixels from the top left.

use std::collections::{HashMap, VecDeque};

/// A node's width, in pixels.
pub const NODE_WIDTH: u32 = 200;
/// A node's height, in pixels.
pub const NODE_HEIGHT: u32 = 56;
/// The width of the slot a long link takes in a layer it crosses.
const DUMMY_WIDTH: u32 = 16;
const GAP_X: u32 = 40;
const GAP_Y: u32 = 72;
const MARGIN: u32 = 24;
/// Between two return lanes, and between the boxes and the first lane.
const LANE_GAP: u32 = 12;
/// Where a returning link leaves and enters a box, from the box's right edge.
const RETURN_INSET: u32 = 24;
/// Barycentre sweeps, alternately down and up (odd, so that the last one goes down).
const SWEEPS: usize = 5;

/// Where the nodes and links of a graph are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Each node's place, by node index.
    pub nodes: Vec<Placed>,
    /// Each link's route, by link index.
    pub routes: Vec<Route>,
    /// The drawing's width.
    pub width: u32,
    /// The drawing's height.
    pub height: u32,
}

/// A node's place: its layer and its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The layer, 0 at the top.
    pub layer: u32,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
}

/// The way a link is drawn: a line through `points` (the first on its source's border or
/// inside it, the last on its target's top), with its label at `label_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The points to draw through, in order.
    pub points: Vec<[u32; 2]>,
    /// Where the label's centre goes.
    pub label_at: [u32; 2],
}

/// Lays out `count` nodes joined by `links` (pairs of node indices); node 0 is the root.
pub fn layout(count: usize, links: &[(usize, usize)]) -> Layout {
    let (layer, found) = layers(count, links);
    let mut graph = Layered::new(layer, &found);
    let chains: Vec<Option<Vec<usize>>> = links.iter().map(|&l| graph.connect(l)).collect();
    graph.order();
    let widest = graph.rows.iter().map(|r| graph.row_width(r)).max();
    let widest = widest.unwrap_or(0);
    let x = graph.lefts(widest);
    let place = |i: usize| Placed {
        layer: graph.layer[i],
        x: x[i],
        y: row_top(graph.layer[i]),
    };
    let nodes: Vec<Placed> = (0..count).map(place).collect();
    let mut returns = 0u32;
    let first_lane = MARGIN + widest + LANE_GAP;
    let routes: Vec<Route> = links
        .iter()
        .zip(&chains)
        .map(|(&(from, to), chain)| match chain {
            Some(chain) => down(place(from), chain.iter().map(|&d| place(d)), place(to)),
            None => {
                returns += 1;
                back(
                    nodes[from],
                    nodes[to],
                    first_lane + (returns - 1) * LANE_GAP,
                    returns,
                )
            }
        })
        .collect();
    let mut routes: Vec<Route> = routes;
    stagger_labels(links, &chains, &mut routes);
    let lanes = if returns == 0 {
        0
    } else {
        LANE_GAP + returns * LANE_GAP
    };
    let layers = graph.rows.len() as u32;
    Layout {
        nodes,
        routes,
        width: widest + lanes + 2 * MARGIN,
        height: (layers * (NODE_HEIGHT + GAP_Y)).saturating_sub(GAP_Y) + 2 * MARGIN,
    }
}

fn row_top(layer: u32) -> u32 {
    MARGIN + layer * (NODE_HEIGHT + GAP_Y)
}

/// A link down: from the source's bottom, through its dummies, into the target's top; the
/// label halfway down the first stretch, near the source.
fn down(from: Placed, dummies: impl Iterator<Item = Placed>, to: Placed) -> Route {
    let bottom = [from.x + NODE_WIDTH / 2, from.y + NODE_HEIGHT];
    let mut points = vec![bottom];
    for d in dummies {
        let centre = d.x + DUMMY_WIDTH / 2;
        points.push([centre, d.y]);
        points.push([centre, d.y + NODE_HEIGHT]);
    }
    points.push([to.x + NODE_WIDTH / 2, to.y]);
    Route {
        label_at: on_curve(bottom, points[1], 0.5),
        points,
    }
}

/// The point at `t` (0 to 1) of the curve the page draws from `a` to `b`: a cubic Bézier
/// leaving `a` and reaching `b` vertically, its control points at half height.
fn on_curve(a: [u32; 2], b: [u32; 2], t: f64) -> [u32; 2] {
    // The Bernstein weights of the control points, summed per coordinate.
    let across = 3.0 * t * t - 2.0 * t * t * t;
    let x = f64::from(a[0]) + (f64::from(b[0]) - f64::from(a[0])) * across;
    let down = t * t * t + 1.5 * t * (1.0 - t);
    let y = f64::from(a[1]) + (f64::from(b[1]) - f64::from(a[1])) * down;
    [x.round() as u32, y.round() as u32]
}

/// The labels of links down that leave one node side by side would overlap halfway down:
/// every other one, from left to right, goes higher or lower.
fn stagger_labels(links: &[(usize, usize)], chains: &[Option<Vec<usize>>], routes: &mut [Route]) {
    let mut by_source: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, (&(from, _), chain)) in links.iter().zip(chains).enumerate() {
        if chain.is_some() {
            by_source.entry(from).or_default().push(i);
        }
    }
    for mut siblings in by_source.into_values().filter(|s| s.len() > 1) {
        siblings.sort_by_key(|&i| routes[i].points[1][0]);
        for (rank, i) in siblings.into_iter().enumerate() {
            let t = if rank % 2 == 0 { 0.35 } else { 0.7 };
            let route = &mut routes[i];
            route.label_at = on_curve(route.points[0], route.points[1], t);
        }
    }
}

/// A link back up or along a row, the `nth` such: round by its own lane at `lane`. It runs
/// higher in the gap below its source and lower in the gap above its target than the
/// labels of the links down, which sit in the middle of the gaps.
fn back(from: Placed, to: Placed, lane: u32, nth: u32) -> Route {
    let step = (nth % 3) * 6;
    let sx = from.x + NODE_WIDTH - RETURN_INSET;
    let below = from.y + NODE_HEIGHT + 10 + step;
    let ex = to.x + NODE_WIDTH - RETURN_INSET;
    let above = to.y.saturating_sub(10 + step);
    Route {
        points: vec![
            [sx, from.y + NODE_HEIGHT],
            [sx, below],
            [lane, below],
            [lane, above],
            [ex, above],
            [ex, to.y],
        ],
        label_at: [(sx + lane) / 2, below],
    }
}

/// Each node's layer, and the nodes in the order they were found. Breadth-first from the root
/// (node 0); then from each node nothing leads to, then from any node still unreached (a
/// cycle nothing leads into). Such a root sits one layer above the highest node it leads to
/// that already has a layer (layer 1 if none).
fn layers(count: usize, links: &[(usize, usize)]) -> (Vec<u32>, Vec<usize>) {
    let mut successors = vec![Vec::new(); count];
    let mut led_to = vec![false; count];
    for &(from, to) in links {
        successors[from].push(to);
        led_to[to] = true;
    }
    let sources = (1..count).filter(|&n| !led_to[n]);
    let roots: Vec<usize> = (0..count.min(1)).chain(sources).chain(1..count).collect();
    let mut layer: Vec<Option<u32>> = vec![None; count];
    let mut found = Vec::with_capacity(count);
    for root in roots {
        if layer[root].is_some() {
            continue;
        }
        let above_targets = successors[root]
            .iter()
            .filter_map(|&s| layer[s])
            .min()
            .map(|l| l.saturating_sub(1));
        layer[root] = Some(match (root, above_targets) {
            (0, _) => 0,
            (_, Some(l)) => l,
            (_, None) => 1,
        });
        found.push(root);
        let mut queue = VecDeque::from([root]);
        while let Some(n) = queue.pop_front() {
            let next = layer[n].unwrap_or(0) + 1;
            for &s in &successors[n] {
                if layer[s].is_none() {
                    layer[s] = Some(next);
                    found.push(s);
                    queue.push_back(s);
                }
            }
        }
    }
    let layer = layer.into_iter().map(Option::unwrap_or_default).collect();
    (layer, found)
}

/// The nodes and dummies by row, and the links between adjacent rows.
struct Layered {
    /// The layer of every node, then of every dummy.
    layer: Vec<u32>,
    /// How many of them are nodes (the rest are dummies).
    nodes: usize,
    rows: Vec<Vec<usize>>,
    /// Links between adjacent rows, from the upper to the lower.
    links: Vec<(usize, usize)>,
}

impl Layered {
    fn new(layer: Vec<u32>, found: &[usize]) -> Self {
        let mut rows: Vec<Vec<usize>> = Vec::new();
        for &n in found {
            let l = layer[n] as usize;
            if rows.len() <= l {
                rows.resize(l + 1, Vec::new());
            }
            rows[l].push(n);
        }
        Layered {
            nodes: layer.len(),
            layer,
            rows,
            links: Vec::new(),
        }
    }

    /// Adds a link: a link down gets a dummy in every layer it crosses (returned, top
    /// first); a link back up or along a row is left out of the rows (`None`).
    fn connect(&mut self, (from, to): (usize, usize)) -> Option<Vec<usize>> {
        let (top, bottom) = (self.layer[from], self.layer[to]);
        if bottom <= top {
            return None;
        }
        let mut chain = Vec::new();
        let mut previous = from;
        for l in top + 1..bottom {
            let dummy = self.layer.len();
            self.layer.push(l);
            self.rows[l as usize].push(dummy);
            self.links.push((previous, dummy));
            chain.push(dummy);
            previous = dummy;
        }
        self.links.push((previous, to));
        Some(chain)
    }

    fn width(&self, n: usize) -> u32 {
        if n < self.nodes {
            NODE_WIDTH
        } else {
            DUMMY_WIDTH
        }
    }

    fn row_width(&self, row: &[usize]) -> u32 {
        let boxes: u32 = row.iter().map(|&n| self.width(n)).sum();
        boxes + GAP_X * (row.len() as u32).saturating_sub(1)
    }

    /// The centre of every member of `row`, from the row's centre (rows are centred).
    fn centres(&self, row: &[usize]) -> Vec<(usize, f64)> {
        let mut left = -f64::from(self.row_width(row)) / 2.0;
        row.iter()
            .map(|&n| {
                let width = f64::from(self.width(n));
                let centre = left + width / 2.0;
                left += width + f64::from(GAP_X);
                (n, centre)
            })
            .collect()
    }

    /// Sorts each row by the mean centre of its neighbours in the row above (sweeping down)
    /// or below (sweeping up); a member without such neighbours keeps its centre.
    fn order(&mut self) {
        for sweep in 0..SWEEPS {
            let going_down = sweep % 2 == 0;
            let count = self.rows.len();
            let rows: Vec<usize> = if going_down {
                (1..count).collect()
            } else {
                (0..count.saturating_sub(1)).rev().collect()
            };
            for l in rows {
                let beside = if going_down { l - 1 } else { l + 1 };
                let neighbours: HashMap<usize, f64> =
                    self.centres(&self.rows[beside]).into_iter().collect();
                let mut keyed: Vec<(f64, usize)> = self
                    .centres(&self.rows[l])
                    .into_iter()
                    .map(|(n, own)| {
                        let linked = self.links.iter().filter_map(|&(a, b)| {
                            let other = if going_down {
                                (b == n).then_some(a)
                            } else {
                                (a == n).then_some(b)
                            };
                            other.and_then(|o| neighbours.get(&o).copied())
                        });
                        (mean(linked).unwrap_or(own), n)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                self.rows[l] = keyed.into_iter().map(|(_, n)| n).collect();
            }
        }
    }

    /// The left edge of every node and dummy, each row centred in `widest`.
    fn lefts(&self, widest: u32) -> Vec<u32> {
        let mut x = vec![0; self.layer.len()];
        for row in &self.rows {
            let mut left = MARGIN + (widest - self.row_width(row)) / 2;
            for &n in row {
                x[n] = left;
                left += self.width(n) + GAP_X;
            }
        }
        x
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0u32), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / f64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the rectangle with corners `a` and `b` overlaps the box at `p`.
    fn crosses(a: [u32; 2], b: [u32; 2], p: Placed) -> bool {
        let (x0, x1) = (a[0].min(b[0]), a[0].max(b[0]));
        let (y0, y1) = (a[1].min(b[1]), a[1].max(b[1]));
        x0 < p.x + NODE_WIDTH && x1 > p.x && y0 < p.y + NODE_HEIGHT && y1 > p.y
    }

    #[test]
    fn layers_go_down_from_the_root_by_shortest_distance() {
        // 0 -> 1 -> 2 -> 3, and 0 -> 3 directly; 4 leads to 2 from nowhere.
        let links = [(0, 1), (1, 2), (2, 3), (0, 3), (4, 2)];
        let drawn = layout(5, &links);
        let layers: Vec<u32> = drawn.nodes.iter().map(|n| n.layer).collect();
        assert_eq!(layers, [0, 1, 2, 1, 1]);
        for (i, a) in drawn.nodes.iter().enumerate() {
            for b in &drawn.nodes[i + 1..] {
                let apart = a.y != b.y || a.x.abs_diff(b.x) >= NODE_WIDTH + GAP_X;
                assert!(apart, "{a:?} and {b:?} overlap");
            }
            assert!(a.x + NODE_WIDTH <= drawn.width && a.y + NODE_HEIGHT <= drawn.height);
        }
    }

    #[test]
    fn long_links_and_loops_cross_no_box() {
        // 1 -> 4 skips two layers, beside a chain through 2 and 3; 4 -> 1 and 3 -> 3 loop.
        let links = [(0, 1), (1, 2), (2, 3), (3, 4), (1, 4), (4, 1), (3, 3)];
        let drawn = layout(5, &links);
        for (route, &(from, to)) in drawn.routes.iter().zip(&links) {
            assert_eq!(
                route.points.last().unwrap()[1],
                drawn.nodes[to].y,
                "into the top"
            );
            // The page draws each stretch within the rectangle of its two ends.
            for pair in route.points.windows(2) {
                for (i, placed) in drawn.nodes.iter().enumerate() {
                    let crossed = crosses(pair[0], pair[1], *placed);
                    assert!(!crossed, "{from}->{to} crosses {i}: {route:?}");
                }
            }
        }
        // Each loop has a lane of its own, right of every box.
        let lanes: Vec<u32> = drawn.routes[5..].iter().map(|r| r.points[2][0]).collect();
        let right = drawn.nodes.iter().map(|n| n.x + NODE_WIDTH).max().unwrap();
        assert!(lanes[0] > right && lanes[1] > lanes[0] && lanes[1] < drawn.width);
    }

    #[test]
    fn a_node_sits_under_the_node_that_leads_to_it() {
        // 0 -> 1, 2 (a branch); 1 -> 4 and 2 -> 3: found as 3 before 4, drawn as 4 before 3.
        let drawn = layout(5, &[(0, 1), (0, 2), (2, 3), (1, 4)]);
        let x = |n: usize| drawn.nodes[n].x;
        assert!(x(1) < x(2));
        assert!(x(4) < x(3), "no crossing links");
    }
}
