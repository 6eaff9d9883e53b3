/* test_kv_avl.c -- unit tests for sm/kv_avl: after every insert and remove of long
 * random runs, the tree must be ordered, every balance factor must equal the real
 * height difference and lie in [-1, +1], parent links must match, and stepping with
 * next/prev must visit exactly the set a reference bitmap holds. The checker recurses,
 * which is fine in a test: AVL height is logarithmic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/prng.h"
#include "sm/kv_avl.h"

struct item {
    struct kv_avl_node node;
    int key;
    bool in_tree;
};

#define ITEM(n) KV_AVL_ENTRY(n, struct item, node)

static void insert_item(struct kv_avl *t, struct item *it)
{
    struct kv_avl_node *parent = NULL, **link = &t->root;
    while (*link != NULL) {
        parent = *link;
        assert_int_not_equal(ITEM(parent)->key, it->key);
        link = it->key < ITEM(parent)->key ? &parent->left : &parent->right;
    }
    kv_avl_link(t, parent, link, &it->node);
    it->in_tree = true;
}

/* Returns the height; fails the test on any broken invariant. */
static int check_subtree(const struct kv_avl_node *n, const struct kv_avl_node *parent, int lo,
                         int hi, size_t *count)
{
    if (n == NULL) {
        return 0;
    }
    assert_ptr_equal(n->parent, parent);
    assert_true(ITEM(n)->key > lo);
    assert_true(ITEM(n)->key < hi);
    int hl = check_subtree(n->left, n, lo, ITEM(n)->key, count);
    int hr = check_subtree(n->right, n, ITEM(n)->key, hi, count);
    assert_int_equal(n->balance, hr - hl);
    assert_true(n->balance >= -1 && n->balance <= 1);
    (*count)++;
    return 1 + (hl > hr ? hl : hr);
}

static void check_tree(const struct kv_avl *t, const struct item *items, int n_items)
{
    size_t count = 0;
    int height = check_subtree(t->root, NULL, -1, n_items, &count);
    assert_int_equal(count, t->n_nodes);
    /* AVL bound: h < 1.4405 log2(n + 2) */
    int bound = 2;
    for (size_t x = count + 2; x > 1; x >>= 1) {
        bound++;
    }
    assert_true(height <= bound * 3 / 2 + 1);

    /* forward and backward stepping visit exactly the items marked in_tree */
    const struct kv_avl_node *n = kv_avl_first(t);
    for (int k = 0; k < n_items; k++) {
        if (!items[k].in_tree) {
            continue;
        }
        assert_non_null(n);
        assert_int_equal(ITEM(n)->key, k);
        n = kv_avl_next(n);
    }
    assert_null(n);
    n = kv_avl_last(t);
    for (int k = n_items - 1; k >= 0; k--) {
        if (!items[k].in_tree) {
            continue;
        }
        assert_non_null(n);
        assert_int_equal(ITEM(n)->key, k);
        n = kv_avl_prev(n);
    }
    assert_null(n);
}

static void test_empty(void **state)
{
    struct kv_avl t = {0};
    assert_null(kv_avl_first(&t));
    assert_null(kv_avl_last(&t));
    check_tree(&t, NULL, 0);
}

static void test_sequential_inserts_stay_balanced(void **state)
{
    enum { N = 4096 };
    struct item *items = calloc(N, sizeof *items);
    struct kv_avl t = {0};
    for (int i = 0; i < N; i++) {
        items[i].key = i;
        insert_item(&t, &items[i]);
    }
    check_tree(&t, items, N);
    /* remove every other one from the front, then the rest from the back */
    for (int i = 0; i < N; i += 2) {
        kv_avl_remove(&t, &items[i].node);
        items[i].in_tree = false;
    }
    check_tree(&t, items, N);
    for (int i = N - 1; i >= 0; i--) {
        if (items[i].in_tree) {
            kv_avl_remove(&t, &items[i].node);
            items[i].in_tree = false;
        }
    }
    check_tree(&t, items, N);
    assert_null(t.root);
    free(items);
}

static void test_random_ops_keep_invariants(void **state)
{
    enum { N = 300, OPS = 20000 };
    struct item items[N];
    memset(items, 0, sizeof items);
    for (int i = 0; i < N; i++) {
        items[i].key = i;
    }
    struct kv_avl t = {0};
    struct prng p;
    prng_seed(&p, 42);
    for (int op = 0; op < OPS; op++) {
        int k = (int)prng_below(&p, N);
        if (items[k].in_tree) {
            kv_avl_remove(&t, &items[k].node);
            items[k].in_tree = false;
        } else {
            insert_item(&t, &items[k]);
        }
        if (op % 7 == 0 || op < 2000) {
            check_tree(&t, items, N);
        }
    }
    check_tree(&t, items, N);
}

static int n_freed;

static void count_free(struct kv_avl_node *n, void *arg)
{
    ITEM(n)->in_tree = false;
    n_freed++;
}

static void test_clear_visits_each_node_once(void **state)
{
    enum { N = 1000 };
    struct item items[N];
    memset(items, 0, sizeof items);
    struct kv_avl t = {0};
    struct prng p;
    prng_seed(&p, 7);
    for (int i = 0; i < N; i++) {
        items[i].key = i;
    }
    /* insert in a shuffled order */
    int order[N];
    for (int i = 0; i < N; i++) {
        order[i] = i;
    }
    for (int i = N - 1; i > 0; i--) {
        int j = (int)prng_below(&p, (uint64_t)i + 1);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (int i = 0; i < N; i++) {
        insert_item(&t, &items[order[i]]);
    }
    check_tree(&t, items, N);
    n_freed = 0;
    kv_avl_clear(&t, count_free, NULL);
    assert_int_equal(n_freed, N);
    for (int i = 0; i < N; i++) {
        assert_false(items[i].in_tree);
    }
    assert_null(t.root);
    assert_int_equal(t.n_nodes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_sequential_inserts_stay_balanced),
        cmocka_unit_test(test_random_ops_keep_invariants),
        cmocka_unit_test(test_clear_visits_each_node_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
