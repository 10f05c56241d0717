// bench-caf.cpp — the programs of bench-actors.c written with CAF 0.17 (Debian's libcaf-dev),
// the peer in tests/bench/actors.sh.
//
// Cases, as in bench-actors.c:
//   tell-1-unbatched  one sender thread, anon_send() per message, one event-based actor
//   tell-1-batched    CAF has no batch send: the same program as tell-1-unbatched
//   tell-2-senders    two sender threads into one mailbox
//   pingpong          round trip between two actors on CAF's scheduler (default: one
//                     worker per core; the two actors usually share a worker)
//   pingpong-2-threads the same with two detached actors, one thread each, as two arbiters
// Each case runs --runs times; the median is printed as `case unit value` lines.
//
// Usage: bench-caf [--messages N] [--rounds R] [--runs K]
//
// Copyright the Tally authors. SPDX-License-Identifier: MIT

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

using namespace caf;

using ping_atom = atom_constant<atom("ping")>;
using pong_atom = atom_constant<atom("pong")>;

namespace {

std::mutex done_lock;
std::condition_variable done_cond;
bool done = false;

void signal_done() {
  std::lock_guard<std::mutex> guard(done_lock);
  done = true;
  done_cond.notify_one();
}

void wait_done() {
  std::unique_lock<std::mutex> guard(done_lock);
  done_cond.wait(guard, [] { return done; });
  done = false;
}

struct counter_state {
  int64_t count = 0;
};

behavior counter(stateful_actor<counter_state>* self, int64_t target) {
  return {
    [=](int64_t value) {
      self->state.count += value;
      if (self->state.count == target)
        signal_done();
    },
  };
}

behavior ponger(event_based_actor* self) {
  return {
    [=](ping_atom, int64_t round) {
      self->send(actor_cast<actor>(self->current_sender()), pong_atom::value, round);
    },
  };
}

behavior pinger(event_based_actor* self, actor peer, int64_t rounds) {
  return {
    [=](pong_atom, int64_t round) {
      if (round == rounds)
        signal_done();
      else
        self->send(peer, ping_atom::value, round + 1);
    },
  };
}

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double run_tell(actor_system& sys, int64_t n, int n_senders) {
  auto c = sys.spawn(counter, n);
  auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < n_senders; i++)
    threads.emplace_back([&, i] {
      (void) i;
      for (int64_t k = 0; k < n / n_senders; k++)
        anon_send(c, int64_t{1});
    });
  wait_done();
  double elapsed = seconds_since(start);
  for (auto& t : threads)
    t.join();
  anon_send_exit(c, exit_reason::user_shutdown);
  return static_cast<double>(n) / elapsed;
}

template <spawn_options Os = no_spawn_options>
double run_pingpong(actor_system& sys, int64_t rounds) {
  auto pong = sys.spawn<Os>(ponger);
  auto ping = sys.spawn<Os>(pinger, pong, rounds);
  auto start = clock_type::now();
  // The first ping comes "from" the pinger so that the pong goes back to it.
  send_as(ping, pong, ping_atom::value, int64_t{1});
  wait_done();
  double elapsed = seconds_since(start);
  anon_send_exit(ping, exit_reason::user_shutdown);
  anon_send_exit(pong, exit_reason::user_shutdown);
  return elapsed * 1e6 / static_cast<double>(rounds);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  int64_t messages = 10000000, rounds = 100000;
  int runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--messages") == 0 || std::strcmp(argv[i], "-n") == 0)
      messages = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--rounds") == 0 || std::strcmp(argv[i], "-r") == 0)
      rounds = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--runs") == 0 || std::strcmp(argv[i], "-k") == 0)
      runs = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench-caf [--messages N] [--rounds R] [--runs K]\n");
      return 2;
    }
  }
  messages -= messages % 2048; // the same counts as bench-actors.c
  if (runs < 1 || messages < 2 || rounds < 1) {
    std::fprintf(stderr, "bench-caf: bad arguments\n");
    return 2;
  }

  actor_system_config cfg;
  actor_system sys{cfg};
  std::vector<double> values(runs);

  for (auto& v : values)
    v = run_tell(sys, messages, 1);
  double one = median(values);
  std::printf("tell-1-unbatched msgs/s %.0f\n", one);
  std::printf("tell-1-batched msgs/s %.0f\n", one);
  std::fflush(stdout);
  for (auto& v : values)
    v = run_tell(sys, messages, 2);
  std::printf("tell-2-senders msgs/s %.0f\n", median(values));
  std::fflush(stdout);
  for (auto& v : values)
    v = run_pingpong(sys, rounds);
  std::printf("pingpong us/round-trip %.3f\n", median(values));
  std::fflush(stdout);
  for (auto& v : values)
    v = run_pingpong<detached>(sys, rounds);
  std::printf("pingpong-2-threads us/round-trip %.3f\n", median(values));
  return 0;
}
