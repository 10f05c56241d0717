/* tally-huge-pages.h — asking for transparent huge pages for a large array.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * tally_huge_pages_advise:
 * @mem: the start of an allocation (from g_malloc() or mmap())
 * @bytes: its size in bytes
 *
 * Asks Linux to back the 2 MiB-aligned interior of @mem .. @mem + @bytes with transparent
 * huge pages (madvise(2), MADV_HUGEPAGE), which a kernel set to "madvise" gives only on
 * request. Call it before the memory is first written: each 2 MiB then takes one page
 * fault instead of 512, and random accesses fewer TLB misses. Advice only: where the
 * kernel, the system or the allocation refuses it, nothing changes and nothing is
 * reported; it does nothing on other systems and for less than 2 MiB. Any thread.
 */
void tally_huge_pages_advise (gpointer mem, gsize bytes);

G_END_DECLS
