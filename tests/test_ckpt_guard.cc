// test_ckpt_guard.cc: ndl-train against crafted and hostile checkpoint directories and weight files:
// every corrupt or contradictory field (RNG position/flag/gauss, loader cursor, counters, optimizer
// state, old raw-byte format) is exit 4 with one line, never a crash; pruning touches only exact
// ckpt-<10 digits>.safetensors names; stale temporary files are removed and never count; a new run
// refuses a directory holding an earlier run's checkpoints; FIFOs do not block; control characters
// read from a file cannot forge a second message line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/rng.h"
#include "data/loader.h"
#include "launch/safetensors.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using namespace ndl_cli;

// A checkpoint (or any safetensors file) read into editable entries and metadata.
struct Editable {
  std::vector<ndl_st_entry> e;
  std::vector<ndl_st_meta> m;
  std::vector<std::string> own;  // bytes of replaced entries
  ndl_st_file f{};

  explicit Editable(const std::string &path) {
    EXPECT_EQ(ndl_safetensors_read(path.c_str(), &f), NDL_OK) << ndl_last_error();
    e.assign(f.entries, f.entries + f.n);
    m.assign(f.meta, f.meta + f.nmeta);
    own.reserve(64);
  }
  ~Editable() { ndl_safetensors_free(&f); }
  void set_meta(const std::string &key, const std::string &value) {
    for (auto &x : m)
      if (key == x.key) {
        snprintf(x.value, sizeof x.value, "%s", value.c_str());
        return;
      }
    ndl_st_meta x{};
    snprintf(x.key, sizeof x.key, "%s", key.c_str());
    snprintf(x.value, sizeof x.value, "%s", value.c_str());
    m.push_back(x);
  }
  void drop_meta(const std::string &key) {
    for (size_t i = 0; i < m.size(); i++)
      if (key == m[i].key) m.erase(m.begin() + (long)i);
  }
  void drop(const std::string &name) {
    for (size_t i = 0; i < e.size(); i++)
      if (name == e[i].name) e.erase(e.begin() + (long)i);
  }
  const ndl_st_entry *find(const std::string &name) {
    for (auto &x : e)
      if (name == x.name) return &x;
    return nullptr;
  }
  // Replace (or add) a 1-D entry.
  void set_entry(const std::string &name, ndl_st_dtype dt, int64_t count, const std::string &bytes) {
    drop(name);
    own.push_back(bytes);
    ndl_st_entry x{};
    snprintf(x.name, sizeof x.name, "%s", name.c_str());
    x.dtype = dt;
    x.ndim = 1;
    x.shape[0] = count;
    x.data = own.back().data();
    x.nbytes = (int64_t)bytes.size();
    e.push_back(x);
  }
  std::string bytes_of(const std::string &name) {
    const ndl_st_entry *x = find(name);
    EXPECT_NE(x, nullptr) << name;
    return x ? std::string((const char *)x->data, (size_t)x->nbytes) : std::string();
  }
  void write(const std::string &path) {
    ASSERT_EQ(ndl_safetensors_write(path.c_str(), e.data(), (int)e.size(), m.data(), (int)m.size()), NDL_OK)
        << ndl_last_error();
  }
};

class CkptGuard : public WorkspaceTest {
 protected:
  CkptGuard() : WorkspaceTest("ndl_ckguard_") {}
  // ndl-train under timeout(1): a hang is exit 124, not a stuck suite.
  RunResult run(const std::string &args) {
    return run_shell("timeout 60 " + std::string(NDL_TRAIN_BIN) + " --quiet " + args, dir);
  }
  std::string common() { return "--data " + data + " --batch-size 50 --hidden-dim 32 --blocks 1 --lr 0.01 --augment "; }
  RunResult train(const std::string &extra) { return run(common() + extra); }
  // A real checkpoint after 7 steps (mid-epoch 1 of 20 batches): returns its path.
  std::string make_checkpoint() {
    std::string ck = dir + "/orig";
    RunResult r = train("--epochs 2 --max-steps 7 --checkpoint-dir " + ck + " --checkpoint-every 7");
    EXPECT_EQ(r.code, 0) << r.err;
    std::string p = ck + "/ckpt-0000000007.safetensors";
    EXPECT_TRUE(exists(p));
    return p;
  }
  // A fresh directory holding only `file` as ckpt-0000000007.safetensors.
  std::string lone(const std::string &name, Editable &ed) {
    std::string d = dir + "/" + name;
    mkdir(d.c_str(), 0755);
    ed.write(d + "/ckpt-0000000007.safetensors");
    return d;
  }
};

// Exit 4, exactly one stderr line "ndl-train: ..." containing `needle`.
void expect_refused(const RunResult &r, const std::string &needle, const std::string &what) {
  EXPECT_EQ(r.code, 4) << what << ": " << r.err;
  auto ls = lines(r.err);
  ASSERT_EQ(ls.size(), 1u) << what << ": " << r.err;
  EXPECT_EQ(ls[0].rfind("ndl-train: ", 0), 0u) << ls[0];
  EXPECT_NE(ls[0].find(needle), std::string::npos) << what << ": " << ls[0];
}

std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; i++) s[i] = (char)(v >> (8 * i));
  return s;
}

TEST_F(CkptGuard, CorruptFieldsExit4WithOneLine) {
  std::string orig = make_checkpoint();
  struct Case {
    const char *key, *value, *needle;
  } cases[] = {
      {"ndl.rng.pos", "-5", "ndl.rng.pos is '-5'"},
      {"ndl.rng.pos", "10000", "ndl.rng.pos is '10000'"},
      {"ndl.rng.pos", "12abc", "ndl.rng.pos"},
      {"ndl.rng.pos", "", "ndl.rng.pos"},
      {"ndl.rng.has_gauss", "7", "ndl.rng.has_gauss is '7'"},
      {"ndl.rng.gauss", "nan", "ndl.rng.gauss"},
      {"ndl.rng.gauss", "inf", "ndl.rng.gauss"},
      {"ndl.cursor.rng.pos", "-5", "ndl.cursor.rng.pos"},
      {"ndl.cursor.rng.pos", "625", "ndl.cursor.rng.pos"},
      {"ndl.cursor.rng.has_gauss", "2", "ndl.cursor.rng.has_gauss"},
      {"ndl.cursor.in_epoch", "0", "ndl.cursor.in_epoch 0 differs"},
      {"ndl.cursor.in_epoch", "-1", "ndl.cursor.in_epoch"},
      {"ndl.cursor.epochs_begun", "0", "ndl.cursor.epochs_begun"},
      {"ndl.cursor.epochs_begun", "-3", "ndl.cursor.epochs_begun"},
      {"ndl.cursor.next_batch", "100000", "ndl.cursor.next_batch"},
      {"ndl.cursor.next_batch", "9223372036854775807", "ndl.cursor.next_batch"},
      {"ndl.seen", "9223372036854775807", "ndl.seen"},
      {"ndl.cursor.next_batch", "3", "ndl.step 7"},
      {"ndl.cursor.next_batch", "0", "ndl.cursor.next_batch"},
      {"ndl.step", "-1", "ndl.step is '-1'"},
      {"ndl.step", "99999999999", "ndl.step"},
      {"ndl.step", "99999999999999999999999", "ndl.step"},
      {"ndl.step", "8", "ndl.optim_t 7 differs"},
      {"ndl.epoch", "-1", "ndl.epoch"},
      {"ndl.epoch", "5", "ndl.cursor.epochs_begun"},
      {"ndl.in_epoch", "2", "ndl.in_epoch"},
      {"ndl.in_epoch", "0", "differs from ndl.in_epoch"},
      {"ndl.optim_t", "-3", "ndl.optim_t"},
      {"ndl.seen", "-50", "ndl.seen"},
      {"ndl.seen", "349", "ndl.seen 349, expected 350"},
      {"ndl.errors", "-1", "ndl.errors"},
      {"ndl.errors", "351", "exceeds ndl.seen"},
      {"ndl.loss_sum", "nan", "ndl.loss_sum"},
      {"ndl.seconds", "-1", "ndl.seconds"},
      {"ndl.format", "ndl-train checkpoint 1", "older builds"},
  };
  int i = 0;
  for (const Case &c : cases) {
    Editable ed(orig);
    ed.set_meta(c.key, c.value);
    std::string d = lone("c" + std::to_string(i++), ed);
    expect_refused(train("--epochs 2 --resume " + d), c.needle, std::string(c.key) + "=" + c.value);
  }
  for (const char *key : {"ndl.rng.pos", "ndl.cursor.next_batch", "ndl.step", "ndl.format"}) {
    Editable ed(orig);
    ed.drop_meta(key);
    expect_refused(train("--epochs 2 --resume " + lone(std::string("m_") + key, ed)), key, std::string("no ") + key);
  }
}

// Counters far beyond any real run but consistent with each other and the cursor (step = 20 E + 7,
// optimizer t = step, E + 1 epochs begun, batch 7 of 20): only the upper bound on the step refuses
// them; without it the next step's t->step++ / optimizer t++ overflow int64 (UBSan, fuzz_resume).
TEST_F(CkptGuard, ConsistentHugeCountersAreRefused) {
  std::string orig = make_checkpoint();
  for (long long step : {9223372036854775807LL, 9223372036854775807LL - 20, (1LL << 62) + 3, 10000000007LL}) {
    ASSERT_EQ(step % 20, 7);
    long long epoch = step / 20;
    Editable ed(orig);
    ed.set_meta("ndl.step", std::to_string(step));
    ed.set_meta("ndl.optim_t", std::to_string(step));
    ed.set_meta("ndl.epoch", std::to_string(epoch));
    ed.set_meta("ndl.cursor.epochs_begun", std::to_string(epoch + 1));
    std::string d = lone("huge" + std::to_string(step), ed);
    expect_refused(train("--epochs 2 --resume " + d), "ndl.step is '" + std::to_string(step) + "'",
                   "consistent step " + std::to_string(step));
  }
}

TEST_F(CkptGuard, CorruptTensorsExit4WithOneLine) {
  std::string orig = make_checkpoint();
  {  // a truncated optimizer state (a consistent, shorter entry)
    Editable ed(orig);
    std::string st = ed.bytes_of("_ndl.optim.state");
    ed.set_entry("_ndl.optim.state", NDL_ST_F32, (int64_t)st.size() / 4 - 3, st.substr(0, st.size() - 12));
    expect_refused(train("--epochs 2 --resume " + lone("short_state", ed)), "optimizer state has", "short state");
  }
  {  // a non-finite optimizer state value
    Editable ed(orig);
    std::string st = ed.bytes_of("_ndl.optim.state");
    uint32_t nan_bits = 0x7fc00000u;
    st.replace(8, 4, le32(nan_bits));
    ed.set_entry("_ndl.optim.state", NDL_ST_F32, (int64_t)st.size() / 4, st);
    expect_refused(train("--epochs 2 --resume " + lone("nan_state", ed)), "not finite", "NaN state");
  }
  {  // RNG words: too few, wrong dtype, missing
    Editable a(orig), b(orig), c(orig);
    std::string mt = a.bytes_of("_ndl.rng.mt");
    a.set_entry("_ndl.rng.mt", NDL_ST_U32, 600, mt.substr(0, 2400));
    expect_refused(train("--epochs 2 --resume " + lone("mt_short", a)), "_ndl.rng.mt", "short mt");
    b.set_entry("_ndl.cursor.rng.mt", NDL_ST_F32, 624, mt);
    expect_refused(train("--epochs 2 --resume " + lone("mt_f32", b)), "_ndl.cursor.rng.mt", "F32 mt");
    c.drop("_ndl.rng.mt");
    expect_refused(train("--epochs 2 --resume " + lone("mt_none", c)), "_ndl.rng.mt is missing", "no mt");
  }
}

// The format before named fields: the RNG and the cursor as raw struct bytes. A negative position
// used to index out of bounds (exit 139) and a contradicting cursor to abort (134).
TEST_F(CkptGuard, OldRawByteCheckpointsAreRefused) {
  std::string orig = make_checkpoint();
  for (int variant = 0; variant < 2; variant++) {
    Editable ed(orig);
    for (const char *k : {"ndl.format", "ndl.rng.pos", "ndl.rng.has_gauss", "ndl.rng.gauss", "ndl.cursor.epochs_begun",
                          "ndl.cursor.next_batch", "ndl.cursor.in_epoch", "ndl.cursor.rng.pos",
                          "ndl.cursor.rng.has_gauss", "ndl.cursor.rng.gauss"})
      ed.drop_meta(k);
    ed.drop("_ndl.rng.mt");
    ed.drop("_ndl.cursor.rng.mt");
    ndl_rng rng;
    ndl_rng_seed(&rng, 3);
    ndl_loader_cursor cur;
    memset(&cur, 0, sizeof cur);
    cur.epochs_begun = 1;
    cur.next_batch = 7;
    cur.n = 1000;
    cur.batch_size = 50;
    cur.shuffle = 1;
    cur.in_epoch = 1;
    cur.epoch_rng = rng;
    if (variant == 0) rng.pos = -100000000;  // far out of bounds
    if (variant == 1) cur.in_epoch = 0;  // the trainer is mid-epoch, the cursor is not
    cur.epochs_begun = variant == 1 ? 0 : 1;
    cur.next_batch = variant == 1 ? 0 : 7;
    ed.set_entry("_ndl.rng", NDL_ST_U8, sizeof rng, std::string((const char *)&rng, sizeof rng));
    ed.set_entry("_ndl.cursor", NDL_ST_U8, sizeof cur, std::string((const char *)&cur, sizeof cur));
    expect_refused(train("--epochs 2 --resume " + lone("old" + std::to_string(variant), ed)), "ndl.format",
                   "old format " + std::to_string(variant));
  }
}

TEST_F(CkptGuard, GoodCheckpointStillResumesBitwiseAndSkipsABadNewerOne) {
  std::string orig = make_checkpoint(), full = dir + "/full.st", part = dir + "/part.st";
  ASSERT_EQ(train("--epochs 2 --save " + full).code, 0);
  std::string d = dir + "/mixed";
  mkdir(d.c_str(), 0755);
  Editable good(orig), bad(orig);
  good.write(d + "/ckpt-0000000007.safetensors");
  bad.set_meta("ndl.rng.pos", "-5");
  bad.write(d + "/ckpt-0000000009.safetensors");
  RunResult r = train("--epochs 2 --resume " + d + " --save " + part);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(part), slurp(full));
  auto ls = lines(r.err);
  ASSERT_EQ(ls.size(), 1u) << r.err;
  EXPECT_NE(ls[0].find("warning: --resume: " + d + "/ckpt-0000000009.safetensors"), std::string::npos) << ls[0];
  EXPECT_NE(ls[0].find("resumed from step 7"), std::string::npos) << ls[0];
  // names not exactly ckpt-<10 digits>.safetensors are never read (no warning about them)
  std::string odd = dir + "/odd";
  mkdir(odd.c_str(), 0755);
  good.write(odd + "/ckpt-0000000007.safetensors");
  for (const char *n : {"ckpt-99.safetensors", "ckpt-0000000099.safetensors.bak", "ckpt-00000000099.safetensors",
                        "ckpt-0000000099.safetensors.tmp.1"})
    bad.write(odd + "/" + n);
  r = train("--epochs 2 --resume " + odd + " --save " + part);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(slurp(part), slurp(full));
}

TEST_F(CkptGuard, PruneDeletesOnlyExactCheckpointNames) {
  std::string ck = dir + "/ck";
  mkdir(ck.c_str(), 0755);
  std::vector<std::string> foreign = {"ckpt-1-best.safetensors", "ckpt-2.txt", "ckpt-3.safetensors.bak",
                                      "ckpt-0000000001.safetensors.old", "ckpt-00000000001.safetensors",
                                      "ckpt-000000001.safetensors", "notes.txt"};
  for (auto &f : foreign) write_file(ck + "/" + f, "keep me", false);
  RunResult r = train("--epochs 1 --checkpoint-dir " + ck + " --checkpoint-every 1");
  ASSERT_EQ(r.code, 0) << r.err;
  for (auto &f : foreign) EXPECT_EQ(slurp(ck + "/" + f), "keep me") << f << " was touched";
  EXPECT_TRUE(exists(ck + "/ckpt-0000000020.safetensors"));
  EXPECT_TRUE(exists(ck + "/ckpt-0000000019.safetensors"));
  EXPECT_FALSE(exists(ck + "/ckpt-0000000018.safetensors"));
  EXPECT_FALSE(exists(ck + "/ckpt-0000000001.safetensors"));
}

TEST_F(CkptGuard, StaleTemporaryFilesAreRemovedAndNeverCount) {
  std::string ck = dir + "/ck";
  mkdir(ck.c_str(), 0755);
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // a pid that is gone
  std::string dead = "ckpt-0000000003.safetensors.tmp." + std::to_string(child);
  // a live pid running another program (this test binary): also stale
  std::string other = "ckpt-0000000004.safetensors.tmp." + std::to_string(getpid());
  std::string odd = "ckpt-0000000005.safetensors.tmp.x12";  // not of the form: left alone
  for (auto *f : {&dead, &other, &odd}) write_file(ck + "/" + *f, std::string(1000, 'x'), false);
  // only temporary files: nothing to resume from
  expect_refused(train("--epochs 1 --resume " + ck), "no checkpoint found", "tmp only");
  // a new run may use the directory, and cleans it
  RunResult r = train("--epochs 1 --max-steps 3 --checkpoint-dir " + ck + " --checkpoint-every 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(exists(ck + "/" + dead));
  EXPECT_FALSE(exists(ck + "/" + other));
  EXPECT_TRUE(exists(ck + "/" + odd));
  EXPECT_TRUE(exists(ck + "/ckpt-0000000003.safetensors"));
}

TEST_F(CkptGuard, NewRunRefusesADirectoryWithAnEarlierRunsCheckpoints) {
  std::string ck = dir + "/ck", other = dir + "/other";
  ASSERT_EQ(train("--epochs 1 --max-steps 5 --checkpoint-dir " + ck + " --checkpoint-every 5").code, 0);
  expect_refused(train("--epochs 1 --checkpoint-dir " + ck),
                 ck + " holds checkpoints of an earlier run (ckpt-0000000005.safetensors): --resume " + ck +
                     " to continue, or use an empty directory",
                 "new run");
  EXPECT_TRUE(exists(ck + "/ckpt-0000000005.safetensors"));
  // resuming into the same directory continues it; into another one holding checkpoints is refused
  RunResult r = train("--epochs 1 --max-steps 10 --resume " + ck + " --checkpoint-dir " + ck + " --checkpoint-every 5");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(exists(ck + "/ckpt-0000000010.safetensors"));
  ASSERT_EQ(train("--epochs 1 --max-steps 5 --checkpoint-dir " + other + " --checkpoint-every 5").code, 0);
  expect_refused(train("--epochs 1 --resume " + ck + " --checkpoint-dir " + other), "holds checkpoints", "other");
}

TEST_F(CkptGuard, FifosAndOtherNonFilesDoNotBlock) {
  std::string fifo = dir + "/w.safetensors";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  RunResult r = run("--data " + data + " --hidden-dim 32 --blocks 1 --eval-only --load " + fifo);
  ASSERT_NE(r.code, 124) << "blocked opening a FIFO";
  expect_refused(r, fifo + ": not a regular file (a FIFO)", "--load fifo");
  // a FIFO and a directory named like checkpoints
  std::string ck = dir + "/ck";
  mkdir(ck.c_str(), 0755);
  ASSERT_EQ(mkfifo((ck + "/ckpt-0000000009.safetensors").c_str(), 0644), 0);
  mkdir((ck + "/ckpt-0000000008.safetensors").c_str(), 0755);
  r = train("--epochs 1 --resume " + ck);
  ASSERT_NE(r.code, 124) << "blocked opening a FIFO";
  expect_refused(r, "ckpt-0000000009.safetensors: not a regular file (a FIFO)", "ckpt fifo");
}

TEST_F(CkptGuard, ControlCharactersCannotForgeAMessageLine) {
  std::string forged = "a\nndl-train: forged", saved = dir + "/saved.safetensors";
  ASSERT_EQ(train("--epochs 1 --max-steps 1 --save " + saved).code, 0);
  {  // every model tensor plus one more, whose name holds a newline
    Editable ed(saved);
    ed.set_entry(forged, NDL_ST_F32, 1, std::string(4, '\0'));
    ed.write(dir + "/extra.safetensors");
  }
  expect_refused(run("--data " + data + " --hidden-dim 32 --blocks 1 --eval-only --load " + dir + "/extra.safetensors"),
                 "unexpected tensor a\\nndl-train: forged (not in the model)", "forged name");
  float v[2] = {1, 2};
  ndl_st_entry e{};
  snprintf(e.name, sizeof e.name, "%s", forged.c_str());
  e.dtype = NDL_ST_F32;
  e.ndim = 1;
  e.shape[0] = 2;
  e.data = v;
  e.nbytes = 8;
  std::string w = dir + "/forged.safetensors";
  ASSERT_EQ(ndl_safetensors_write(w.c_str(), &e, 1, nullptr, 0), NDL_OK);
  // a layout error quoting the name (shape says 3 floats, offsets hold 2)
  std::string bytes = slurp(w), hdr = bytes.substr(8, bytes.size() - 16);
  size_t at = hdr.find("[2]");
  ASSERT_NE(at, std::string::npos) << hdr;
  hdr.replace(at, 3, "[3]");
  std::string out = bytes.substr(0, 8) + hdr + bytes.substr(bytes.size() - 8);
  write_file(w, out, false);
  expect_refused(run("--data " + data + " --hidden-dim 32 --blocks 1 --eval-only --load " + w), "tensor a\\nndl",
                 "forged layout");
  // a checkpoint whose setup metadata holds a newline
  std::string orig = make_checkpoint();
  Editable ed(orig);
  ed.set_meta("ndl.setup.optimizer", "adam\nndl-train: forged\r\x1b[2K");
  expect_refused(train("--epochs 2 --resume " + lone("forged_meta", ed)), "'adam\\nndl-train: forged\\r\\x1b[2K'",
                 "forged meta");
}

}  // namespace
