/* tally-huge-pages.c — see tally-huge-pages.h.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-huge-pages.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

void
tally_huge_pages_advise (gpointer mem, gsize bytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const guintptr huge = 2 * 1024 * 1024;
  guintptr from = ((guintptr)mem + huge - 1) & ~(huge - 1);
  guintptr to = ((guintptr)mem + bytes) & ~(huge - 1);

  if (mem != NULL && to > from)
    (void)madvise ((void *)from, to - from, MADV_HUGEPAGE);
#else
  (void)mem;
  (void)bytes;
#endif
}
