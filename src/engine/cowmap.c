/* cowmap.c - see cowmap.h.
 *
 * The hash uses linear probing with backward-shift deletion, so there are no
 * tombstones and lookups stay short however much churn there is.  The table
 * grows at 3/4 load and shrinks below 1/8. */
#include "cowmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_TABLE 1024u
#define MIN_POOL 1024u

static inline uint32_t home(const struct cowmap *m, uint64_t chunk)
{
	return (uint32_t)((chunk * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (m->tsize - 1);
}

static uint32_t *new_table(uint32_t size)
{
	uint32_t *t = malloc(sizeof(*t) * size);
	if (t)
		memset(t, 0xff, sizeof(*t) * size); /* COW_NONE everywhere */
	return t;
}

int cowmap_init(struct cowmap *m)
{
	memset(m, 0, sizeof(*m));
	m->free_head = COW_NONE;
	m->tsize = MIN_TABLE;
	m->table = new_table(m->tsize);
	return m->table ? 0 : -ENOMEM;
}

void cowmap_destroy(struct cowmap *m)
{
	free(m->pool);
	free(m->table);
	memset(m, 0, sizeof(*m));
}

/* Bucket holding chunk's chain, or the empty bucket where it would go. */
static uint32_t find_bucket(const struct cowmap *m, uint64_t chunk)
{
	uint32_t mask = m->tsize - 1;
	uint32_t b = home(m, chunk);

	while (m->table[b] != COW_NONE && m->pool[m->table[b]].chunk != chunk)
		b = (b + 1) & mask;
	return b;
}

static int rehash(struct cowmap *m, uint32_t size)
{
	uint32_t *old = m->table;
	uint32_t old_size = m->tsize;
	uint32_t *t = new_table(size);

	if (!t)
		return -ENOMEM;
	m->table = t;
	m->tsize = size;
	for (uint32_t i = 0; i < old_size; i++)
		if (old[i] != COW_NONE)
			m->table[find_bucket(m, m->pool[old[i]].chunk)] = old[i];
	free(old);
	return 0;
}

static int grow_pool(struct cowmap *m)
{
	uint32_t cap = m->cap ? m->cap * 2 : MIN_POOL;
	struct version *pool;

	if (m->cap >= UINT32_MAX / 2)
		return -ENOMEM;
	pool = realloc(m->pool, sizeof(*pool) * cap);
	if (!pool)
		return -ENOMEM;
	memset(pool + m->cap, 0, sizeof(*pool) * (cap - m->cap));
	/* Thread the new records onto the free list, lowest id first. */
	for (uint32_t i = cap; i-- > m->cap;) {
		pool[i].next = m->free_head;
		m->free_head = i;
	}
	m->pool = pool;
	m->cap = cap;
	return 0;
}

uint32_t cowmap_alloc(struct cowmap *m, uint64_t chunk)
{
	struct version *v;
	uint32_t id, b;

	if (m->free_head == COW_NONE && grow_pool(m) < 0)
		return COW_NONE;
	if ((m->tused + 1) * 4 > m->tsize * 3 && rehash(m, m->tsize * 2) < 0)
		return COW_NONE;
	id = m->free_head;
	v = &m->pool[id];
	m->free_head = v->next;
	memset(v, 0, sizeof(*v));
	v->chunk = chunk;
	v->ram_slot = COW_NONE;
	v->file_slot = COW_NONE;
	v->state = VERSION_COPYING;

	b = find_bucket(m, chunk);
	v->next = m->table[b]; /* newest first; COW_NONE for a new chain */
	if (m->table[b] == COW_NONE)
		m->tused++;
	m->table[b] = id;
	m->live++;
	return id;
}

/* Removes bucket b, shifting later members of its probe run back. */
static void delete_bucket(struct cowmap *m, uint32_t b)
{
	uint32_t mask = m->tsize - 1;
	uint32_t i = b, j = b;

	for (;;) {
		j = (j + 1) & mask;
		if (m->table[j] == COW_NONE)
			break;
		uint32_t k = home(m, m->pool[m->table[j]].chunk);
		bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
		if (stays)
			continue;
		m->table[i] = m->table[j];
		i = j;
	}
	m->table[i] = COW_NONE;
	m->tused--;
}

void cowmap_free(struct cowmap *m, uint32_t id)
{
	struct version *v = &m->pool[id];
	uint32_t b = find_bucket(m, v->chunk);

	if (m->table[b] == id) {
		if (v->next != COW_NONE)
			m->table[b] = v->next;
		else
			delete_bucket(m, b);
	} else {
		uint32_t p = m->table[b];
		while (p != COW_NONE && m->pool[p].next != id)
			p = m->pool[p].next;
		if (p != COW_NONE)
			m->pool[p].next = v->next;
	}
	memset(v, 0, sizeof(*v));
	v->state = VERSION_FREE;
	v->next = m->free_head;
	m->free_head = id;
	m->live--;
	if (m->tsize > MIN_TABLE && m->tused * 8 < m->tsize)
		(void)rehash(m, m->tsize / 2); /* on failure the big table stays */
}

uint32_t cowmap_head(const struct cowmap *m, uint64_t chunk)
{
	return m->table[find_bucket(m, chunk)];
}

uint32_t cowmap_lookup(const struct cowmap *m, uint64_t chunk, uint64_t bit)
{
	uint32_t b = find_bucket(m, chunk);

	for (uint32_t id = m->table[b]; id != COW_NONE; id = m->pool[id].next)
		if (m->pool[id].mask & bit)
			return id;
	return COW_NONE;
}

size_t cowmap_memory(const struct cowmap *m)
{
	return (size_t)m->cap * sizeof(struct version) + (size_t)m->tsize * sizeof(uint32_t);
}

void cowmap_shrink_if_empty(struct cowmap *m)
{
	if (m->live || !m->cap)
		return;
	free(m->pool);
	m->pool = NULL;
	m->cap = 0;
	m->free_head = COW_NONE;
}
