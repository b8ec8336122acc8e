// Package suggest finds the name someone probably meant: the did-you-mean of
// check's messages about site.yaml keys, policy calls and event names.
//
// It is a leaf: it imports nothing of understudy, so the events registry
// (and a driver) may use it as well as the runtime.
package suggest

// Nearest returns the candidate closest to word, at most 2 edits away
// (ties: the first in candidates' order), or "".
func Nearest(word string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := Distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein edit distance of a and b (in bytes).
func Distance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
