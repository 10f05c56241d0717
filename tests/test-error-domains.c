/* test-error-domains.c — the string of every error domain, exactly.
 *
 * clang-format once put spaces inside the names given to G_DEFINE_QUARK, so the domains
 * were registered as "tally - run - error - quark"; the macros now sit in clang-format off
 * blocks, and this suite reads back what they produced with g_quark_to_string(). The
 * librdkafka module exports only conf_init, so its domain is checked in the module's file
 * ($TALLY_RDKAFKA_PLUGIN, set by tests/meson.build) instead.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor.h"
#include "tally-aggregator.h"
#include "tally-broker.h"
#include "tally-checkpoint.h"
#include "tally-config.h"
#include "tally-metrics-server.h"
#include "tally-publisher.h"
#include "tally-request-reader.h"
#include "tally-run.h"
#include "tally-snapshot-format.h"
#include "tally-source.h"
#include "tally-tokenizer.h"
#include "tally-topics.h"
#include "tally-window-clock.h"

#include <string.h>

static void
test_libtally_domains (void)
{
  static const struct
  {
    GQuark (*quark) (void);
    const char *name;
  } domains[] = {
    { tally_actor_error_quark, "tally-actor-error-quark" },
    { tally_aggregator_error_quark, "tally-aggregator-error-quark" },
    { tally_broker_error_quark, "tally-broker-error-quark" },
    { tally_checkpoint_error_quark, "tally-checkpoint-error-quark" },
    { tally_config_error_quark, "tally-config-error-quark" },
    { tally_metrics_server_error_quark, "tally-metrics-server-error-quark" },
    { tally_publisher_error_quark, "tally-publisher-error-quark" },
    { tally_request_reader_error_quark, "tally-request-reader-error-quark" },
    { tally_run_error_quark, "tally-run-error-quark" },
    { tally_snapshot_format_error_quark, "tally-snapshot-format-error-quark" },
    { tally_source_error_quark, "tally-source-error-quark" },
    { tally_tokenizer_error_quark, "tally-tokenizer-error-quark" },
    { tally_topics_error_quark, "tally-topics-error-quark" },
    { tally_window_error_quark, "tally-window-error-quark" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (domains); i++)
    {
      GQuark quark = domains[i].quark ();

      g_assert_cmpuint (quark, !=, 0);
      g_assert_cmpstr (g_quark_to_string (quark), ==, domains[i].name);
    }
  /* The macro behind each is what GError users see, too. */
  g_assert_cmpstr (g_quark_to_string (TALLY_RUN_ERROR), ==, "tally-run-error-quark");
}

/* The module's string constant, as G_DEFINE_QUARK stringified it, and not the spaced one. */
static void
test_module_domain (void)
{
  const char *path = g_getenv ("TALLY_RDKAFKA_PLUGIN");
  g_autofree char *data = NULL;
  g_autoptr (GError) error = NULL;
  gsize len = 0;
  static const char good[] = "tally-rdkafka-plugin-error-quark";
  static const char bad[] = "tally - rdkafka - plugin - error - quark";

  if (path == NULL)
    {
      g_test_skip ("TALLY_RDKAFKA_PLUGIN is not set (meson test sets it)");
      return;
    }
  g_file_get_contents (path, &data, &len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (memmem (data, len, good, sizeof good));
  g_assert_null (memmem (data, len, bad, sizeof bad - 1));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error-domains/libtally", test_libtally_domains);
  g_test_add_func ("/error-domains/rdkafka-plugin", test_module_domain);
  return g_test_run ();
}
