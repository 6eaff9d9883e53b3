/* kv_avl.h -- an intrusive AVL tree with parent pointers: the ordered index under the
 * MVCC store (src/sm/kv.c). Keys never live here; the owner embeds a struct
 * kv_avl_node in its own record and does the comparisons itself, in the style of the
 * Linux rbtree: descend with your own compare, then kv_avl_link() the new node at the
 * empty slot you stopped at. That keeps the hot compare inline in the caller and lets
 * one tree type index both keys (by bytes) and leases (by id).
 *
 * Why AVL: worst-case O(log n) for find, insert and remove whatever keys a client
 * picks (a skiplist with hash-derived levels can be driven to O(n) by chosen keys), and
 * parent pointers make in-order stepping and rebalancing loops instead of recursion.
 * Height is at most 1.44 log2(n + 2), so 2^32 nodes stay under 47 levels.
 *
 * Ownership: the tree never allocates or frees; nodes belong to the caller, who must
 * kv_avl_remove() a node before freeing it. Not thread-safe.
 */
#ifndef CONCLAVE_SM_KV_AVL_H
#define CONCLAVE_SM_KV_AVL_H

#include <stddef.h>
#include <stdint.h>

struct kv_avl_node {
    struct kv_avl_node *left;
    struct kv_avl_node *right;
    struct kv_avl_node *parent;
    int balance; /* height(right) - height(left), always -1, 0 or +1 between calls */
};

struct kv_avl {
    struct kv_avl_node *root;
    size_t n_nodes;
};

/* Recovers the owning record from an embedded node (libuv's container_of). */
#define KV_AVL_ENTRY(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Links node into the slot *link, a NULL child pointer of parent (or &t->root when the
 * tree is empty, with parent NULL), found by the caller's descent, then rebalances.
 * The caller guarantees the in-order position is right. O(log n). */
void kv_avl_link(struct kv_avl *t, struct kv_avl_node *parent, struct kv_avl_node **link,
                 struct kv_avl_node *node);

/* Unlinks node, which must be in t, and rebalances. The node's fields are garbage
 * afterwards; the caller owns (and may free) it. O(log n). */
void kv_avl_remove(struct kv_avl *t, struct kv_avl_node *node);

/* In-order stepping. NULL at either end. first/last O(log n); next/prev amortized O(1),
 * worst case O(log n). */
struct kv_avl_node *kv_avl_first(const struct kv_avl *t);
struct kv_avl_node *kv_avl_last(const struct kv_avl *t);
struct kv_avl_node *kv_avl_next(const struct kv_avl_node *node);
struct kv_avl_node *kv_avl_prev(const struct kv_avl_node *node);

/* Empties t without rebalancing, handing each node to free_cb exactly once (in no
 * particular order). O(n) time, O(1) space: it flattens by rotation, never recurses. */
void kv_avl_clear(struct kv_avl *t, void (*free_cb)(struct kv_avl_node *node, void *arg),
                  void *arg);

#endif /* CONCLAVE_SM_KV_AVL_H */
