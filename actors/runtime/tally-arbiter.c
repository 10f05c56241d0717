/* tally-arbiter.c — arbiters: the threads and main contexts that actors run on.
 *
 * A thread arbiter owns a GMainContext and a GMainLoop and runs the loop on its own
 * thread with the context pushed as that thread's thread-default. A wrapped arbiter
 * (tally_arbiter_new_for_context()) only borrows a context that someone else iterates.
 *
 * Two choices shape this file. GLib sources are only ever created and attached by the
 * thread that runs them: starting and stopping actors, from any thread, goes through one
 * "control" GSource per arbiter (control_dispatch()). And a busy pair of actors on two
 * arbiters should hand messages over through shared memory rather than a sleep/wake round
 * trip through the kernel: a thread arbiter spins briefly before it sleeps
 * (arbiter_poll()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor-private.h"

/* How long an idle thread arbiter watches for new work before it sleeps, in µs. */
#define SPIN_US 20
/* A gap this long (µs) between two checks of a spin means the thread was preempted... */
#define SPIN_GAP_US 50
/* ...and it then does not spin for this long (µs). */
#define SPIN_BACKOFF_US 100000

/* While mailboxes keep a thread arbiter busy, poll() its fds once per this many loop
 * iterations. */
#define POLL_EVERY 16

/* The waker of the thread arbiter running on this thread, for arbiter_poll(). */
static __thread TallyWaker *thread_waker;
/* The thread arbiter running on this thread, if any. */
static __thread TallyArbiter *thread_arbiter;
static __thread guint skipped_polls;
static __thread gint64 spin_off_until;

static TallyWaker *
waker_new (GMainContext *context, gboolean spins)
{
  TallyWaker *waker = g_new0 (TallyWaker, 1);

  waker->ref_count = 1;
  waker->sleeping = 1;
  waker->spins = spins;
  waker->context = g_main_context_ref (context);
  return waker;
}

TallyWaker *
tally_waker_ref (TallyWaker *waker)
{
  g_atomic_int_inc (&waker->ref_count);
  return waker;
}

void
tally_waker_unref (TallyWaker *waker)
{
  if (!g_atomic_int_dec_and_test (&waker->ref_count))
    return;
  g_main_context_unref (waker->context);
  g_free (waker);
}

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

/* The GPollFunc of thread arbiters: spin on `work`, then sleep in poll().
 *
 * Before blocking in poll() it spins for up to SPIN_US microseconds watching its
 * TallyWaker's `work` flag (unless it was preempted while spinning lately: on a busy
 * machine sleeping is faster), and while it spins senders skip the eventfd write of
 * g_main_context_wakeup() (see TallyWaker in tally-actor-private.h). A busy pair of actors
 * on two arbiters then hands messages over through shared memory; an idle arbiter costs
 * SPIN_US of CPU once per idle period and then sleeps as usual. */
static gint
arbiter_poll (GPollFD *fds, guint n_fds, gint timeout)
{
  TallyWaker *waker = thread_waker;
  gint64 now;
  gint result;

  if (waker == NULL)
    return g_poll (fds, n_fds, timeout);
  if (timeout == 0)
    {
      /* Something is ready already. If it is a mailbox, skip the poll() system call, but
       * look at the file descriptors at least every POLL_EVERY iterations so that fd
       * sources on this context keep up while mailboxes stay busy. */
      if (g_atomic_int_get (&waker->work) && ++skipped_polls < POLL_EVERY)
        goto work;
      skipped_polls = 0;
      return g_poll (fds, n_fds, 0);
    }
  skipped_polls = 0;

  now = g_get_monotonic_time ();
  if (now >= spin_off_until)
    {
      gint64 deadline = now + SPIN_US;

      for (;;)
        {
          gint64 then = now;

          for (guint i = 0; i < 64; i++)
            {
              if (g_atomic_int_get (&waker->work))
                goto work;
              cpu_relax ();
            }
          now = g_get_monotonic_time ();
          if (now - then > SPIN_GAP_US)
            {
              /* The thread lost its CPU while spinning: the machine is busy, and a thread
               * that is awake but not running is the worst case for a sender (it skips
               * the wakeup). Sleep in poll() for a while; a kernel wakeup is then
               * faster. */
              spin_off_until = now + SPIN_BACKOFF_US;
              break;
            }
          if (now >= deadline)
            break;
        }
    }

  g_atomic_int_set (&waker->sleeping, 1);
  if (g_atomic_int_get (&waker->work))
    {
      g_atomic_int_set (&waker->sleeping, 0);
      goto work;
    }
  result = g_poll (fds, n_fds, timeout);
  g_atomic_int_set (&waker->sleeping, 0);
  g_atomic_int_set (&waker->work, 0);
  return result;

work:
  /* Nothing polled: GLib's check phase finds the mailbox that went non-empty. */
  g_atomic_int_set (&waker->work, 0);
  for (guint i = 0; i < n_fds; i++)
    fds[i].revents = 0;
  return 0;
}

typedef struct
{
  GSource parent;
  TallyArbiter *arbiter; /* no ref: the arbiter destroys this source before it goes */
} TallyControlSource;

static gboolean
control_ready (GSource *source)
{
  return g_atomic_int_get (&((TallyControlSource *)source)->arbiter->control_pending) != 0;
}

static gboolean
control_prepare (GSource *source, gint *timeout)
{
  *timeout = -1;
  return control_ready (source);
}

/* Owner thread. */
static void
maybe_quit (TallyArbiter *self)
{
  GMainLoop *loop;
  gboolean done;

  /* Nothing of @self is touched after the unlock: a tally_arbiter_stop() waiting on
   * another thread may free it as soon as it sees the broadcast. (A thread arbiter's loop
   * lives until its thread has been joined.) */
  pthread_mutex_lock (&self->lock);
  done = self->stop_requested && self->n_actors == 0;
  loop = self->loop;
  if (done)
    pthread_cond_broadcast (&self->cond);
  pthread_mutex_unlock (&self->lock);

  if (done && loop != NULL)
    g_main_loop_quit (loop);
}

/* The control source, on the owner thread. tally_actor_start(), on any thread, only
 * records the new actor's address in the arbiter's `starting` list and wakes the context;
 * this creates and attaches the actor's mailbox source, so GLib sources are only ever
 * created and attached by the thread that runs them. A stop request goes the same way:
 * this stops every running actor, and once the last one has run its `stopped` hook the
 * loop quits (maybe_quit()) and tally_arbiter_stop() joins the thread. */
static gboolean
control_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  TallyArbiter *self = ((TallyControlSource *)source)->arbiter;
  g_autoptr (GPtrArray) starting = NULL;
  gboolean stop;

  pthread_mutex_lock (&self->lock);
  g_atomic_int_set (&self->control_pending, 0);
  starting = g_steal_pointer (&self->starting);
  self->starting = g_ptr_array_new ();
  stop = self->stop_requested;
  pthread_mutex_unlock (&self->lock);

  for (guint i = 0; i < starting->len; i++)
    {
      TallyAddress *address = starting->pdata[i];

      tally_address_attach (address);
      g_ptr_array_add (self->running, address); /* takes the `starting` reference */
    }

  if (stop)
    {
      /* Stopping one actor may finish another, so iterate over a copy. */
      g_autoptr (GPtrArray) running = g_ptr_array_new_full (self->running->len, NULL);

      for (guint i = 0; i < self->running->len; i++)
        g_ptr_array_add (running, tally_address_ref (self->running->pdata[i]));
      for (guint i = 0; i < running->len; i++)
        {
          tally_address_stop (running->pdata[i]);
          tally_address_unref (running->pdata[i]);
        }
      maybe_quit (self);
    }
  return G_SOURCE_CONTINUE;
}

/* The arbiter struct is freed with its control source, so that a dispatch still running
 * on the thread that owns a wrapped context never sees it freed. */
static void
control_finalize (GSource *source)
{
  TallyArbiter *self = ((TallyControlSource *)source)->arbiter;

  g_ptr_array_unref (self->starting);
  g_ptr_array_unref (self->running);
  pthread_cond_destroy (&self->cond);
  pthread_mutex_destroy (&self->lock);
  g_free (self->name);
  g_free (self);
}

static GSourceFuncs control_funcs = {
  .prepare = control_prepare,
  .check = control_ready,
  .dispatch = control_dispatch,
  .finalize = control_finalize,
};

void
tally_arbiter_wake (TallyArbiter *self)
{
  g_atomic_int_set (&self->control_pending, 1);
  g_main_context_wakeup (self->context);
}

static TallyArbiter *
arbiter_new (const char *name, GMainContext *context, gboolean own_thread)
{
  TallyArbiter *self = g_new0 (TallyArbiter, 1);

  self->ref_count = 1;
  self->name = g_strdup (name);
  self->context = g_main_context_ref (context);
  self->waker = waker_new (context, own_thread);
  pthread_mutex_init (&self->lock, NULL);
  pthread_cond_init (&self->cond, NULL);
  self->starting = g_ptr_array_new ();
  self->running = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_address_unref);

  self->control = g_source_new (&control_funcs, sizeof (TallyControlSource));
  ((TallyControlSource *)self->control)->arbiter = self;
  g_source_set_static_name (self->control, "TallyArbiter control");
  g_source_set_priority (self->control, G_PRIORITY_HIGH);
  g_source_attach (self->control, self->context);
  return self;
}

static gpointer
arbiter_thread (gpointer data)
{
  TallyArbiter *self = data;

  thread_waker = self->waker;
  thread_arbiter = self;
  g_atomic_int_set (&self->waker->sleeping, 0);
  g_main_context_push_thread_default (self->context);
  g_main_loop_run (self->loop);
  g_main_context_pop_thread_default (self->context);
  g_atomic_int_set (&self->waker->sleeping, 1);
  thread_waker = NULL;
  thread_arbiter = NULL;
  return NULL;
}

TallyArbiter *
tally_arbiter_new (const char *name)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  TallyArbiter *self;

  g_return_val_if_fail (name != NULL, NULL);

  /* Everything is set up before the thread exists, so thread creation orders it. */
  self = arbiter_new (name, context, TRUE);
  g_main_context_set_poll_func (context, arbiter_poll);
  self->loop = g_main_loop_new (context, FALSE);
  self->thread = g_thread_new (name, arbiter_thread, self);
  return self;
}

TallyArbiter *
tally_arbiter_new_for_context (GMainContext *context)
{
  if (context == NULL)
    context = g_main_context_default ();
  return arbiter_new ("wrapped", context, FALSE);
}

/* The arbiter for actors started with a NULL arbiter: on a thread arbiter's own thread,
 * that arbiter; elsewhere one wrapper per thread-default context, created on first use
 * and kept for the life of the process. */
TallyArbiter *
tally_arbiter_get_implicit (void)
{
  static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
  static GHashTable *registry; /* GMainContext -> TallyArbiter, both referenced */
  g_autoptr (GMainContext) context = g_main_context_ref_thread_default ();
  TallyArbiter *self;

  /* On an arbiter's own thread (in a handler, say) that arbiter is the one to use. */
  if (thread_arbiter != NULL && thread_arbiter->context == context)
    return tally_arbiter_ref (thread_arbiter);

  pthread_mutex_lock (&registry_lock);
  if (registry == NULL)
    registry = g_hash_table_new (NULL, NULL);
  self = g_hash_table_lookup (registry, context);
  if (self == NULL)
    {
      self = tally_arbiter_new_for_context (context);
      self->implicit = TRUE;
      g_hash_table_insert (registry, g_main_context_ref (context), self);
    }
  tally_arbiter_ref (self);
  pthread_mutex_unlock (&registry_lock);
  return self;
}

GMainContext *
tally_arbiter_get_context (TallyArbiter *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  return self->context;
}

/* Any thread: queues @address (a new reference is taken) to have its mailbox attached.
 * Returns FALSE when the arbiter is stopping or stopped. */
gboolean
tally_arbiter_add_actor (TallyArbiter *self, TallyAddress *address)
{
  gboolean accepted;

  pthread_mutex_lock (&self->lock);
  accepted = !self->stop_requested;
  if (accepted)
    {
      g_ptr_array_add (self->starting, tally_address_ref (address));
      self->n_actors++;
    }
  pthread_mutex_unlock (&self->lock);

  if (accepted)
    tally_arbiter_wake (self);
  return accepted;
}

/* Owner thread: @address ran its `stopped` hook. */
void
tally_arbiter_actor_finished (TallyArbiter *self, TallyAddress *address)
{
  g_ptr_array_remove_fast (self->running, address);
  pthread_mutex_lock (&self->lock);
  self->n_actors--;
  pthread_mutex_unlock (&self->lock);
  maybe_quit (self);
}

void
tally_arbiter_stop (TallyArbiter *self)
{
  gboolean joined;

  g_return_if_fail (self != NULL);

  pthread_mutex_lock (&self->lock);
  self->stop_requested = TRUE;
  joined = self->joined;
  pthread_mutex_unlock (&self->lock);
  if (joined)
    return;

  if (self->thread != NULL)
    {
      if (g_thread_self () == self->thread)
        {
          g_critical ("tally_arbiter_stop() called on the arbiter's own thread (%s)", self->name);
          return;
        }
      tally_arbiter_wake (self);
      g_thread_join (g_steal_pointer (&self->thread));
    }
  else if (g_main_context_acquire (self->context))
    {
      /* We may run the context: do so until the last actor has stopped. */
      tally_arbiter_wake (self);
      for (;;)
        {
          guint n;

          pthread_mutex_lock (&self->lock);
          n = self->n_actors;
          pthread_mutex_unlock (&self->lock);
          if (n == 0)
            break;
          g_main_context_iteration (self->context, TRUE);
        }
      g_main_context_release (self->context);
    }
  else
    {
      /* Another thread runs the context: wait for it to stop our actors. */
      tally_arbiter_wake (self);
      pthread_mutex_lock (&self->lock);
      while (self->n_actors > 0)
        pthread_cond_wait (&self->cond, &self->lock);
      pthread_mutex_unlock (&self->lock);
    }

  pthread_mutex_lock (&self->lock);
  self->joined = TRUE;
  pthread_mutex_unlock (&self->lock);
}

TallyArbiter *
tally_arbiter_ref (TallyArbiter *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  g_atomic_int_inc (&self->ref_count);
  return self;
}

void
tally_arbiter_unref (TallyArbiter *self)
{
  GMainContext *context;
  GMainLoop *loop;
  TallyWaker *waker;
  GSource *control;

  g_return_if_fail (self != NULL);

  if (!g_atomic_int_dec_and_test (&self->ref_count))
    return;

  tally_arbiter_stop (self);

  /* The context outlives the control source's finalization (which frees @self). */
  loop = g_steal_pointer (&self->loop);
  context = g_steal_pointer (&self->context);
  waker = g_steal_pointer (&self->waker);
  control = g_steal_pointer (&self->control);
  g_source_destroy (control);
  g_source_unref (control);

  g_clear_pointer (&loop, g_main_loop_unref);
  tally_waker_unref (waker);
  g_main_context_unref (context);
}
