/* kv_avl.c -- intrusive AVL tree with parent pointers (see kv_avl.h for the contract).
 *
 * Invariants between calls (tests/unit/test_kv_avl.c checks all of them after every
 * operation of a long random run):
 *   - in-order traversal follows the caller's key order (the caller links correctly);
 *   - for every node, balance == height(right) - height(left) and lies in [-1, +1];
 *   - child->parent points back at its parent, and root->parent == NULL.
 *
 * Every loop walks one root-to-leaf path at most once, so each operation is O(log n)
 * with no recursion. Rotations follow the textbook presentation (Knuth TAOCP vol. 3,
 * §6.2.3; Wikipedia "AVL tree", which uses the same balance sign): a single rotation
 * when the heavy child leans the same way as its parent, a double one otherwise.
 *
 * Sections: rotations | link | remove | stepping | clear.
 */
#include "sm/kv_avl.h"

#include "base/assert.h"

/* ==== rotations ========================================================== */

/* Points whatever referenced old (its parent's child slot or the root) at repl. */
static void replace_child(struct kv_avl *t, struct kv_avl_node *parent, struct kv_avl_node *old,
                          struct kv_avl_node *repl)
{
    repl->parent = parent;
    if (parent == NULL) {
        t->root = repl;
    } else if (parent->left == old) {
        parent->left = repl;
    } else {
        CC_ASSERT(parent->right == old);
        parent->right = repl;
    }
}

/* x is right-heavy by 2 and its right child z does not lean left. Returns the new
 * subtree root (z). When z was balanced (only possible during removal) the subtree's
 * height is unchanged; otherwise it shrank by one. */
static struct kv_avl_node *rotate_left(struct kv_avl *t, struct kv_avl_node *x)
{
    struct kv_avl_node *z = x->right;
    struct kv_avl_node *inner = z->left;
    struct kv_avl_node *parent = x->parent;

    x->right = inner;
    if (inner != NULL) {
        inner->parent = x;
    }
    z->left = x;
    replace_child(t, parent, x, z);
    x->parent = z;
    if (z->balance == 0) {
        x->balance = +1;
        z->balance = -1;
    } else {
        x->balance = 0;
        z->balance = 0;
    }
    return z;
}

/* Mirror image of rotate_left. */
static struct kv_avl_node *rotate_right(struct kv_avl *t, struct kv_avl_node *x)
{
    struct kv_avl_node *z = x->left;
    struct kv_avl_node *inner = z->right;
    struct kv_avl_node *parent = x->parent;

    x->left = inner;
    if (inner != NULL) {
        inner->parent = x;
    }
    z->right = x;
    replace_child(t, parent, x, z);
    x->parent = z;
    if (z->balance == 0) {
        x->balance = -1;
        z->balance = +1;
    } else {
        x->balance = 0;
        z->balance = 0;
    }
    return z;
}

/* Sets the balances of x and z after a double rotation around y, from y's old lean. */
static void double_rotation_balances(struct kv_avl_node *lo, struct kv_avl_node *hi,
                                     struct kv_avl_node *y)
{
    /* lo ends up as y's left child, hi as its right child. */
    if (y->balance == 0) {
        lo->balance = 0;
        hi->balance = 0;
    } else if (y->balance > 0) {
        lo->balance = -1;
        hi->balance = 0;
    } else {
        lo->balance = 0;
        hi->balance = +1;
    }
    y->balance = 0;
}

/* x is right-heavy by 2 and its right child z leans left: rotate z right, then x left.
 * The subtree always shrinks by one. Returns the new subtree root (z's old left). */
static struct kv_avl_node *rotate_right_left(struct kv_avl *t, struct kv_avl_node *x)
{
    struct kv_avl_node *z = x->right;
    struct kv_avl_node *y = z->left;
    struct kv_avl_node *parent = x->parent;
    struct kv_avl_node *t2 = y->left;
    struct kv_avl_node *t3 = y->right;

    z->left = t3;
    if (t3 != NULL) {
        t3->parent = z;
    }
    x->right = t2;
    if (t2 != NULL) {
        t2->parent = x;
    }
    y->left = x;
    y->right = z;
    replace_child(t, parent, x, y);
    x->parent = y;
    z->parent = y;
    double_rotation_balances(x, z, y);
    return y;
}

/* Mirror image of rotate_right_left. */
static struct kv_avl_node *rotate_left_right(struct kv_avl *t, struct kv_avl_node *x)
{
    struct kv_avl_node *z = x->left;
    struct kv_avl_node *y = z->right;
    struct kv_avl_node *parent = x->parent;
    struct kv_avl_node *t2 = y->right;
    struct kv_avl_node *t3 = y->left;

    z->right = t3;
    if (t3 != NULL) {
        t3->parent = z;
    }
    x->left = t2;
    if (t2 != NULL) {
        t2->parent = x;
    }
    y->right = x;
    y->left = z;
    replace_child(t, parent, x, y);
    x->parent = y;
    z->parent = y;
    double_rotation_balances(z, x, y);
    return y;
}

/* ==== link =============================================================== */

void kv_avl_link(struct kv_avl *t, struct kv_avl_node *parent, struct kv_avl_node **link,
                 struct kv_avl_node *node)
{
    CC_ASSERT(link != NULL);
    CC_ASSERT(*link == NULL);
    CC_ASSERT((parent == NULL) == (link == &t->root));

    node->left = NULL;
    node->right = NULL;
    node->parent = parent;
    node->balance = 0;
    *link = node;
    t->n_nodes++;

    /* Walk up while the subtree that grew makes its parent taller. */
    struct kv_avl_node *n = node;
    for (struct kv_avl_node *p = n->parent; p != NULL; n = p, p = n->parent) {
        if (n == p->left) {
            if (p->balance > 0) {
                p->balance = 0; /* the short side caught up: height unchanged */
                return;
            }
            if (p->balance == 0) {
                p->balance = -1; /* p grew; keep climbing */
                continue;
            }
            /* p is now left-heavy by 2: one rotation restores the old height. */
            if (n->balance > 0) {
                rotate_left_right(t, p);
            } else {
                rotate_right(t, p);
            }
            return;
        }
        if (p->balance < 0) {
            p->balance = 0;
            return;
        }
        if (p->balance == 0) {
            p->balance = +1;
            continue;
        }
        if (n->balance < 0) {
            rotate_right_left(t, p);
        } else {
            rotate_left(t, p);
        }
        return;
    }
}

/* ==== remove ============================================================= */

/* The subtree on side `from_left` of p lost one level of height. Walk up restoring
 * balance until some subtree keeps its height. */
static void retrace_after_removal(struct kv_avl *t, struct kv_avl_node *p, int from_left)
{
    while (p != NULL) {
        struct kv_avl_node *n; /* root of the subtree whose height just dropped */
        if (from_left) {
            if (p->balance < 0) {
                p->balance = 0;
                n = p;
            } else if (p->balance == 0) {
                p->balance = +1;
                return;
            } else {
                int z_balance = p->right->balance;
                n = z_balance < 0 ? rotate_right_left(t, p) : rotate_left(t, p);
                if (z_balance == 0) {
                    return; /* single rotation over a balanced child keeps the height */
                }
            }
        } else {
            if (p->balance > 0) {
                p->balance = 0;
                n = p;
            } else if (p->balance == 0) {
                p->balance = -1;
                return;
            } else {
                int z_balance = p->left->balance;
                n = z_balance > 0 ? rotate_left_right(t, p) : rotate_right(t, p);
                if (z_balance == 0) {
                    return;
                }
            }
        }
        p = n->parent;
        if (p != NULL) {
            from_left = (p->left == n);
        }
    }
}

void kv_avl_remove(struct kv_avl *t, struct kv_avl_node *node)
{
    CC_ASSERT(t->n_nodes > 0);
    struct kv_avl_node *parent = node->parent;
    struct kv_avl_node *retrace_from;
    int from_left;

    if (node->left != NULL && node->right != NULL) {
        /* Two children: the in-order successor s (leftmost of the right subtree, so it
         * has no left child) takes node's place, balance and all. The height loss is
         * where s came from. */
        struct kv_avl_node *s = node->right;
        while (s->left != NULL) {
            s = s->left;
        }
        if (s == node->right) {
            retrace_from = s;
            from_left = 0;
        } else {
            struct kv_avl_node *sp = s->parent;
            sp->left = s->right;
            if (s->right != NULL) {
                s->right->parent = sp;
            }
            s->right = node->right;
            s->right->parent = s;
            retrace_from = sp;
            from_left = 1;
        }
        s->left = node->left;
        s->left->parent = s;
        s->balance = node->balance;
        replace_child(t, parent, node, s);
    } else {
        struct kv_avl_node *child = node->left != NULL ? node->left : node->right;
        if (parent == NULL) {
            t->root = child;
            if (child != NULL) {
                child->parent = NULL;
            }
            t->n_nodes--;
            return;
        }
        from_left = (parent->left == node);
        if (from_left) {
            parent->left = child;
        } else {
            parent->right = child;
        }
        if (child != NULL) {
            child->parent = parent;
        }
        retrace_from = parent;
    }
    t->n_nodes--;
    retrace_after_removal(t, retrace_from, from_left);
}

/* ==== stepping =========================================================== */

struct kv_avl_node *kv_avl_first(const struct kv_avl *t)
{
    struct kv_avl_node *n = t->root;
    if (n == NULL) {
        return NULL;
    }
    while (n->left != NULL) {
        n = n->left;
    }
    return n;
}

struct kv_avl_node *kv_avl_last(const struct kv_avl *t)
{
    struct kv_avl_node *n = t->root;
    if (n == NULL) {
        return NULL;
    }
    while (n->right != NULL) {
        n = n->right;
    }
    return n;
}

struct kv_avl_node *kv_avl_next(const struct kv_avl_node *node)
{
    if (node->right != NULL) {
        struct kv_avl_node *n = node->right;
        while (n->left != NULL) {
            n = n->left;
        }
        return n;
    }
    const struct kv_avl_node *n = node;
    struct kv_avl_node *p = n->parent;
    while (p != NULL && p->right == n) {
        n = p;
        p = p->parent;
    }
    return p;
}

struct kv_avl_node *kv_avl_prev(const struct kv_avl_node *node)
{
    if (node->left != NULL) {
        struct kv_avl_node *n = node->left;
        while (n->right != NULL) {
            n = n->right;
        }
        return n;
    }
    const struct kv_avl_node *n = node;
    struct kv_avl_node *p = n->parent;
    while (p != NULL && p->left == n) {
        n = p;
        p = p->parent;
    }
    return p;
}

/* ==== clear ============================================================== */

void kv_avl_clear(struct kv_avl *t, void (*free_cb)(struct kv_avl_node *node, void *arg), void *arg)
{
    /* Rotate left children up until the current node has none, then free it and move
     * right: every node is visited a bounded number of times and no stack is needed. */
    struct kv_avl_node *n = t->root;
    while (n != NULL) {
        if (n->left != NULL) {
            struct kv_avl_node *l = n->left;
            n->left = l->right;
            l->right = n;
            n = l;
        } else {
            struct kv_avl_node *r = n->right;
            free_cb(n, arg);
            n = r;
        }
    }
    t->root = NULL;
    t->n_nodes = 0;
}
