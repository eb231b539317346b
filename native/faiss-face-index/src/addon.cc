// Node binding to FAISS (Meta, MIT) for the face index: an HNSW graph whose links are chosen on exact float32
// distances, stored with product-quantisation (PQ) codes instead of the vectors. FAISS's own IndexHNSWPQ builds
// its graph on PQ distances, which reaches weak true pairs badly (README "Face matching at scale"); building
// the graph as an IndexHNSWFlat and then swapping its storage for PQ codes keeps the exact graph and the small
// storage. Only what the face index needs is bound; everything heavy (build, add, save, load) runs on libuv's
// thread pool (Napi::AsyncWorker) so the worker's event loop keeps renewing BullMQ's locks.
#include <napi.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPQ.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <omp.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using idx_t = faiss::Index::idx_t;

// The face's label once removed: -1 - seq (negative, so searches can tell it; still names the face for has()).
inline idx_t removedLabel(idx_t seq) { return -1 - seq; }
inline idx_t seqOf(idx_t label) { return label < 0 ? -1 - label : label; }

class FacePqIndex : public Napi::ObjectWrap<FacePqIndex> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "FacePqIndex",
        {InstanceMethod("addExact", &FacePqIndex::AddExact), InstanceMethod("compress", &FacePqIndex::Compress),
         InstanceMethod("add", &FacePqIndex::Add), InstanceMethod("search", &FacePqIndex::Search),
         InstanceMethod("remove", &FacePqIndex::Remove), InstanceMethod("has", &FacePqIndex::Has),
         InstanceMethod("save", &FacePqIndex::Save), InstanceMethod("release", &FacePqIndex::Release),
         InstanceMethod("stats", &FacePqIndex::Stats), InstanceMethod("unlinkRemoved", &FacePqIndex::UnlinkRemoved),
         StaticMethod("load", &FacePqIndex::Load)});
    constructor_ = new Napi::FunctionReference(Napi::Persistent(ctor));
    exports.Set("FacePqIndex", ctor);
    return exports;
  }

  // new FacePqIndex(dimensions, connectivity, expansionAdd): an empty index in its building (exact) phase.
  explicit FacePqIndex(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FacePqIndex>(info) {
    if (info.Length() == 0) return;  // Load() fills it
    dimensions_ = info[0].As<Napi::Number>().Int32Value();
    auto* hnsw = new faiss::IndexHNSWFlat(dimensions_, info[1].As<Napi::Number>().Int32Value());
    hnsw->hnsw.efConstruction = info[2].As<Napi::Number>().Int32Value();
    hnsw->own_fields = true;
    index_.reset(new faiss::IndexIDMap(hnsw));
    index_->own_fields = true;
  }

 private:
  static Napi::FunctionReference* constructor_;
  std::unique_ptr<faiss::IndexIDMap> index_;
  int dimensions_ = 0;
  // A background call that changes the index (add, compress, load): nothing else may touch it meanwhile.
  std::atomic<bool> mutating_{false};
  // Background calls that only read it (save): searches may run beside them, changes may not.
  std::atomic<int> reading_{0};
  // Labels in ascending order of sequence number (faces are added in log order): lookups by binary search.
  bool sorted_ = true;
  // Faces removed (negative labels), kept so stats() costs nothing per search.
  size_t removed_ = 0;
  // release() asked for while a background call ran: the index is freed when the last one finishes, and
  // every call meanwhile is refused as after a release (a replaced view is released from a timer: no throw).
  bool releasePending_ = false;

  void ReleaseIfDue() {
    if (releasePending_ && !mutating_ && reading_ == 0) {
      index_.reset();
      releasePending_ = false;
    }
  }

  void NoteAdded(const std::vector<idx_t>& labels) {
    idx_t last = index_->id_map.empty() ? -1 : seqOf(index_->id_map.back());
    for (idx_t label : labels) {
      if (label <= last) sorted_ = false;
      last = label;
    }
  }

  // The position of `seq` among the labels, or -1.
  long Find(idx_t seq) const {
    const auto& map = index_->id_map;
    if (sorted_) {
      size_t lo = 0, hi = map.size();
      while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (seqOf(map[mid]) < seq) lo = mid + 1;
        else hi = mid;
      }
      return lo < map.size() && seqOf(map[lo]) == seq ? static_cast<long>(lo) : -1;
    }
    for (size_t i = 0; i < map.size(); i++)
      if (seqOf(map[i]) == seq) return static_cast<long>(i);
    return -1;
  }

  faiss::IndexHNSW* hnsw() const { return static_cast<faiss::IndexHNSW*>(index_->index); }
  bool compressed() const { return dynamic_cast<faiss::IndexPQ*>(hnsw()->storage) != nullptr; }

  void Check(Napi::Env env, bool mutating) {
    if (!index_ || releasePending_) throw Napi::Error::New(env, "face index used after release");
    if (mutating_ || (mutating && reading_ > 0)) throw Napi::Error::New(env, "face index busy with a background operation");
  }

  // Runs `work` on the thread pool, resolving with `done()`'s value (or rejecting with FAISS's message).
  Napi::Value Background(Napi::Env env, bool mutating, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done = nullptr) {
    class Job : public Napi::AsyncWorker {
     public:
      Job(Napi::Env env, FacePqIndex* self, bool mutating, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
          : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), self_(self), mutating_(mutating), work_(std::move(work)), done_(std::move(done)) {
        self_->Ref();
        if (mutating_) self_->mutating_ = true;
        else self_->reading_++;
      }
      void Finish() {
        if (mutating_) self_->mutating_ = false;
        else self_->reading_--;
        self_->ReleaseIfDue();
        self_->Unref();
      }
      void Execute() override {
        try {
          work_();
        } catch (const std::exception& e) {
          SetError(e.what());
        }
      }
      void OnOK() override {
        Finish();
        deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
      }
      void OnError(const Napi::Error& e) override {
        Finish();
        deferred_.Reject(e.Value());
      }
      Napi::Promise::Deferred deferred_;

     private:
      FacePqIndex* self_;
      bool mutating_;
      std::function<void()> work_;
      std::function<Napi::Value(Napi::Env)> done_;
    };
    auto* job = new Job(env, this, mutating, std::move(work), std::move(done));
    Napi::Promise promise = job->deferred_.Promise();
    job->Queue();
    return promise;
  }

  static std::vector<idx_t> Labels(const Napi::Value& value) {
    auto seqs = value.As<Napi::Float64Array>();
    std::vector<idx_t> out(seqs.ElementLength());
    for (size_t i = 0; i < out.size(); i++) out[i] = static_cast<idx_t>(seqs[i]);
    return out;
  }

  std::vector<float> Vectors(Napi::Env env, const Napi::Value& value, size_t count) {
    auto vectors = value.As<Napi::Float32Array>();
    if (vectors.ElementLength() != count * static_cast<size_t>(dimensions_)) throw Napi::Error::New(env, "vectors do not match the sequence numbers");
    return std::vector<float>(vectors.Data(), vectors.Data() + vectors.ElementLength());
  }

  // addExact(seqs: Float64Array, vectors: Float32Array): Promise<void>. Building phase only: links on exact distances.
  Napi::Value AddExact(const Napi::CallbackInfo& info) {
    Check(info.Env(), true);
    if (compressed()) throw Napi::Error::New(info.Env(), "addExact after compress");
    auto labels = Labels(info[0]);
    auto vectors = Vectors(info.Env(), info[1], labels.size());
    NoteAdded(labels);
    return Background(info.Env(), true, [this, labels = std::move(labels), vectors = std::move(vectors)]() {
      index_->add_with_ids(labels.size(), vectors.data(), labels.data());
    });
  }

  // compress(subQuantizers: number, trainingCount: number): Promise<void>. Trains PQ (8 bits per sub-quantizer)
  // on up to trainingCount of the exact vectors (spread evenly), encodes them all, keeps the graph, drops floats.
  Napi::Value Compress(const Napi::CallbackInfo& info) {
    Check(info.Env(), true);
    if (compressed()) throw Napi::Error::New(info.Env(), "already compressed");
    int subQuantizers = info[0].As<Napi::Number>().Int32Value();
    size_t training = info[1].As<Napi::Number>().Int64Value();
    return Background(info.Env(), true, [this, subQuantizers, training]() {
      auto* flatHnsw = hnsw();
      auto* flat = dynamic_cast<faiss::IndexFlat*>(flatHnsw->storage);
      size_t n = flat->ntotal;
      const float* x = reinterpret_cast<const float*>(flat->codes.data());
      size_t take = std::min(n, training);
      std::vector<float> sample(take * dimensions_);
      for (size_t i = 0; i < take; i++) std::memcpy(&sample[i * dimensions_], x + (i * n / take) * dimensions_, sizeof(float) * dimensions_);
      // An IndexHNSWPQ (so write_index and read_index know it) whose graph is the exact one.
      // Owned here until it replaces the flat one: a training that throws (too few faces) leaks nothing.
      std::unique_ptr<faiss::IndexHNSWPQ> compressedHnsw(new faiss::IndexHNSWPQ(dimensions_, subQuantizers, flatHnsw->hnsw.nb_neighbors(1)));
      // The caller decides how few faces are enough (PQ_MIN_FACES); FAISS would print a warning per sub-quantizer.
      dynamic_cast<faiss::IndexPQ*>(compressedHnsw->storage)->pq.cp.min_points_per_centroid = 1;
      compressedHnsw->storage->train(take, sample.data());
      compressedHnsw->storage->add(n, x);
      // Moved, not copied: at 10^6 faces the graph is ~150 MB, held twice at the peak of the build otherwise.
      compressedHnsw->hnsw = std::move(flatHnsw->hnsw);
      compressedHnsw->ntotal = n;
      compressedHnsw->is_trained = true;
      index_->index = compressedHnsw.release();
      delete flatHnsw;
    });
  }

  // add(seqs, vectors): Promise<void>. After compress: links chosen on PQ distances to the stored faces.
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Check(info.Env(), true);
    auto labels = Labels(info[0]);
    auto vectors = Vectors(info.Env(), info[1], labels.size());
    NoteAdded(labels);
    return Background(info.Env(), true, [this, labels = std::move(labels), vectors = std::move(vectors)]() {
      // Linking compares stored codes with each other (symmetric distances): FAISS needs the table of centroid
      // distances (sub-quantizers × 256 × 256 floats, 8 MB), which it neither saves nor rebuilds on load, and an
      // exception inside its OpenMP loop would abort the process. Made here, so an index only searched never
      // holds it (IndexHNSWPQ::train makes it the same way).
      if (auto* pq = dynamic_cast<faiss::IndexPQ*>(hnsw()->storage); pq && pq->pq.sdc_table.empty()) pq->pq.compute_sdc_table();
      index_->add_with_ids(labels.size(), vectors.data(), labels.data());
    });
  }

  // search(query: Float32Array, k, efSearch): { labels: Float64Array, distances: Float32Array } (squared L2,
  // nearest first; labels < 0 are removed faces or no result). Synchronous: about a millisecond at 10^6 faces.
  Napi::Value Search(const Napi::CallbackInfo& info) {
    Check(info.Env(), false);  // beside a save: both only read
    auto query = info[0].As<Napi::Float32Array>();
    if (query.ElementLength() != static_cast<size_t>(dimensions_)) throw Napi::Error::New(info.Env(), "query has the wrong dimensions");
    idx_t k = std::max<idx_t>(1, std::min<idx_t>(info[1].As<Napi::Number>().Int64Value(), index_->ntotal));
    faiss::SearchParametersHNSW params;
    params.efSearch = std::max<int>(info[2].As<Napi::Number>().Int32Value(), static_cast<int>(k));
    std::vector<float> distances(k);
    std::vector<idx_t> labels(k);
    if (index_->ntotal > 0) {
      // IndexIDMap refuses search parameters (FAISS 1.7.3): the HNSW index is searched and its labels mapped here.
      try {
        hnsw()->search(1, query.Data(), k, distances.data(), labels.data(), &params);
      } catch (const std::exception& e) {
        throw Napi::Error::New(info.Env(), e.what());
      }
      for (idx_t i = 0; i < k; i++) labels[i] = labels[i] < 0 ? -1 : index_->id_map[labels[i]];
    } else {
      k = 0;
    }
    auto outLabels = Napi::Float64Array::New(info.Env(), k);
    auto outDistances = Napi::Float32Array::New(info.Env(), k);
    for (idx_t i = 0; i < k; i++) {
      outLabels[static_cast<size_t>(i)] = static_cast<double>(labels[i]);
      outDistances[static_cast<size_t>(i)] = distances[i];
    }
    auto out = Napi::Object::New(info.Env());
    out.Set("labels", outLabels);
    out.Set("distances", outDistances);
    return out;
  }

  // remove(seqs: Float64Array): number. Marks each held face removed (its label negated) and overwrites its
  // stored code or vector with random bytes, so nothing of it survives in memory or in a later save.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Check(info.Env(), true);
    auto seqs = Labels(info[0]);
    auto* storage = dynamic_cast<faiss::IndexFlatCodes*>(hnsw()->storage);
    std::mt19937_64 random(std::random_device{}());
    size_t removed = 0;
    auto& map = index_->id_map;
    for (idx_t seq : seqs) {
      long first = Find(seq);
      if (first < 0) continue;
      bool held = false;
      // Every node of this number (a face added twice has two): sorted, they follow the first; else scan on.
      for (size_t i = static_cast<size_t>(first); i < map.size(); i++) {
        if (seqOf(map[i]) != seq) {
          if (sorted_) break;
          continue;
        }
        if (map[i] != seq) continue;  // already removed
        index_->id_map[i] = removedLabel(seq);
        removed_++;
        uint8_t* code = storage->codes.data() + i * storage->code_size;
        for (size_t b = 0; b < storage->code_size; b++) code[b] = static_cast<uint8_t>(random());
        if (!compressed()) {
          // Random bytes are no float vector: a random unit vector instead (stands for nobody).
          std::normal_distribution<float> gaussian;
          float* v = reinterpret_cast<float*>(code);
          float norm = 0;
          for (int d = 0; d < dimensions_; d++) norm += (v[d] = gaussian(random)) * v[d];
          for (int d = 0; d < dimensions_; d++) v[d] /= std::sqrt(norm);
        }
        held = true;
      }
      removed += held;
    }
    return Napi::Number::New(info.Env(), static_cast<double>(removed));
  }

  // unlinkRemoved(): Promise<number>, the links cleared. Removed faces' nodes lose every link, out and in: the
  // centroid of a node's neighbours has cosine ~0.87 with its own vector (measured, 20,000 clustered faces,
  // connectivity 16), so links alone would let a saved file rebuild an erased face's embedding. Each list is
  // compacted (FAISS stops at the first -1). A removed entry point is replaced by the live node of highest
  // level. Live faces lose the removed ones as routes (PQ_REBUILD_SHARE bounds that), and Reconnect then makes
  // every live face reachable at level 0 again.
  Napi::Value UnlinkRemoved(const Napi::CallbackInfo& info) {
    Check(info.Env(), true);
    auto cleared = std::make_shared<size_t>(0);
    return Background(
        info.Env(), true,
        [this, cleared]() {
          faiss::HNSW& graph = hnsw()->hnsw;
          const auto& map = index_->id_map;
          const size_t n = map.size();
          std::vector<bool> gone(n);
          for (size_t i = 0; i < n; i++) gone[i] = map[i] < 0;
          if (graph.entry_point >= 0 && gone[graph.entry_point]) {
            long best = -1;
            for (size_t i = 0; i < n; i++)
              if (!gone[i] && (best < 0 || graph.levels[i] > graph.levels[best])) best = static_cast<long>(i);
            if (best >= 0) {
              graph.entry_point = static_cast<faiss::HNSW::storage_idx_t>(best);
              graph.max_level = graph.levels[best] - 1;
            }
          }
          const auto& cumulative = graph.cum_nneighbor_per_level;
          for (size_t i = 0; i < n; i++) {
            bool keepOut = !gone[i] || static_cast<long>(i) == graph.entry_point;  // every face removed: the graph stays walkable
            for (int level = 0; level < graph.levels[i]; level++) {
              auto* begin = graph.neighbors.data() + graph.offsets[i] + cumulative[level];
              auto* end = graph.neighbors.data() + graph.offsets[i] + cumulative[level + 1];
              auto* kept = begin;
              for (auto* link = begin; link < end && *link >= 0; link++) {
                if (keepOut && !gone[*link]) *kept++ = *link;
                else ++*cleared;
              }
              std::fill(kept, end, -1);
            }
          }
          Reconnect(gone);
        },
        [cleared](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*cleared)); });
  }

  // After unlinkRemoved cleared the removed faces' links: makes every live face reachable again at level 0, where
  // a search's beam runs (it starts from the node the greedy descent of the upper levels ends on, any live node).
  // Without it a live face whose only routes ran through removed ones was never found again, even by a search
  // asking for every face (a tenant that shrank to a few faces lost most of them; the next snapshot copied the
  // loss). Level 0 is made strongly connected among live faces: each face the entry point does not reach gets a
  // link from a reached face near it (found by a search) with a free slot; each face that does not reach the entry
  // point gets a link to a face that does (its own free slot, else its last one), until both hold.
  void Reconnect(const std::vector<bool>& gone) {
    faiss::HNSW& graph = hnsw()->hnsw;
    const size_t n = gone.size();
    if (graph.entry_point < 0 || gone[graph.entry_point]) return;  // no live face
    const auto width = static_cast<size_t>(graph.cum_nneighbor_per_level[1]);
    auto links = [&](size_t i) { return graph.neighbors.data() + graph.offsets[i]; };
    auto freeSlot = [&](size_t i) -> faiss::HNSW::storage_idx_t* {
      auto* begin = links(i);
      for (size_t j = 0; j < width; j++)
        if (begin[j] < 0) return begin + j;
      return nullptr;
    };
    auto linked = [&](size_t from, size_t to) {
      auto* begin = links(from);
      for (size_t j = 0; j < width && begin[j] >= 0; j++)
        if (static_cast<size_t>(begin[j]) == to) return true;
      return false;
    };
    // Live faces near `u` (nearest first), by a search from the entry point: all reached from it.
    std::vector<float> vector(dimensions_);
    auto near = [&](size_t u) {
      hnsw()->storage->reconstruct(static_cast<idx_t>(u), vector.data());
      const idx_t k = std::min<idx_t>(64, static_cast<idx_t>(n));
      std::vector<float> distances(k);
      std::vector<idx_t> found(k);
      faiss::SearchParametersHNSW params;
      params.efSearch = 128;
      hnsw()->search(1, vector.data(), k, distances.data(), found.data(), &params);
      std::vector<size_t> out;
      for (idx_t id : found)
        if (id >= 0 && static_cast<size_t>(id) != u && !gone[id]) out.push_back(static_cast<size_t>(id));
      return out;
    };
    for (int round = 0; round < 8; round++) {
      bool changed = false;
      // Forward: faces the entry point reaches.
      std::vector<bool> reached(n);
      std::vector<size_t> queue{static_cast<size_t>(graph.entry_point)};
      reached[graph.entry_point] = true;
      for (size_t head = 0; head < queue.size(); head++) {
        auto* begin = links(queue[head]);
        for (size_t j = 0; j < width && begin[j] >= 0; j++)
          if (!reached[begin[j]]) reached[begin[j]] = true, queue.push_back(begin[j]);
      }
      for (size_t u = 0; u < n; u++) {
        if (gone[u] || reached[u]) continue;
        faiss::HNSW::storage_idx_t* slot = nullptr;
        for (size_t v : near(u))
          if (reached[v] && (slot = freeSlot(v))) break;
        for (size_t v = 0; !slot && v < n; v++)
          if (reached[v] && !gone[v]) slot = freeSlot(v);
        if (!slot) slot = links(graph.entry_point) + width - 1;  // every reached face full: the entry point's last
        *slot = static_cast<faiss::HNSW::storage_idx_t>(u);
        changed = true;
        // What u reaches is reached now too.
        std::vector<size_t> more{u};
        reached[u] = true;
        for (size_t head = 0; head < more.size(); head++) {
          auto* begin = links(more[head]);
          for (size_t j = 0; j < width && begin[j] >= 0; j++)
            if (!reached[begin[j]]) reached[begin[j]] = true, more.push_back(begin[j]);
        }
      }
      // Backward: faces that reach the entry point (repeated sweeps until nothing changes).
      std::vector<bool> reaches(n);
      reaches[graph.entry_point] = true;
      for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++) {
          if (gone[i] || reaches[i]) continue;
          auto* begin = links(i);
          for (size_t j = 0; j < width && begin[j] >= 0; j++)
            if (reaches[begin[j]]) {
              reaches[i] = grew = true;
              break;
            }
        }
      }
      for (size_t u = 0; u < n; u++) {
        if (gone[u] || reaches[u]) continue;
        auto* own = links(u);
        for (size_t j = 0; j < width && own[j] >= 0 && !reaches[u]; j++) reaches[u] = reaches[own[j]];  // through a face linked meanwhile
        if (reaches[u]) continue;
        size_t target = static_cast<size_t>(graph.entry_point);
        for (size_t v : near(u))
          if (reaches[v]) {
            target = v;
            break;
          }
        if (linked(u, target)) continue;
        auto* slot = freeSlot(u);
        if (!slot) slot = links(u) + width - 1;
        *slot = static_cast<faiss::HNSW::storage_idx_t>(target);
        reaches[u] = true;
        changed = true;
      }
      if (!changed) return;
    }
  }

  Napi::Value Has(const Napi::CallbackInfo& info) {
    Check(info.Env(), false);
    idx_t seq = static_cast<idx_t>(info[0].As<Napi::Number>().DoubleValue());
    long found = Find(seq);
    if (found < 0) return Napi::Boolean::New(info.Env(), false);
    const auto& map = index_->id_map;
    for (size_t i = static_cast<size_t>(found); i < map.size(); i++) {
      if (map[i] == seq) return Napi::Boolean::New(info.Env(), true);
      if (sorted_ && seqOf(map[i]) != seq) break;
    }
    return Napi::Boolean::New(info.Env(), false);
  }

  // save(path): Promise<void>.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    Check(info.Env(), false);
    std::string path = info[0].As<Napi::String>();
    return Background(info.Env(), false, [this, path]() { faiss::write_index(index_.get(), path.c_str()); });
  }

  // Throws unless every number a search or an add follows from the file is in range: the graph's offsets,
  // levels, neighbour ids and entry point, the storage's code count and size, the label count. A file that
  // FAISS reads without complaint can still be corrupt (bits flipped on disk, zeroed blocks after a crash),
  // and one out-of-range neighbour id would make a search read far outside the index and kill the worker, at
  // every start, since it loads the newest file. Corrupt PQ centroids or codes only move distances: candidates
  // are checked exactly from the log. About 30 ms at 10^6 faces.
  static void CheckStructure(const faiss::IndexIDMap& map, const std::string& path) {
    auto fail = [&path](const std::string& what) { throw std::runtime_error(path + " is corrupt: " + what); };
    const auto* index = static_cast<const faiss::IndexHNSW*>(map.index);
    const faiss::HNSW& graph = index->hnsw;
    const auto n = static_cast<size_t>(map.ntotal);
    auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(index->storage);
    if (!codes) fail("its storage is neither PQ codes nor float vectors");
    if (index->ntotal != map.ntotal || codes->ntotal != map.ntotal || map.id_map.size() != n) fail("its face counts disagree");
    if (index->d != map.d || codes->d != map.d || map.d <= 0) fail("its dimensions disagree");
    if (auto* pq = dynamic_cast<const faiss::IndexPQ*>(codes)) {
      if (pq->pq.nbits != 8 || pq->pq.M * pq->pq.dsub != static_cast<size_t>(map.d) || pq->pq.code_size != pq->pq.M || pq->code_size != pq->pq.M ||
          pq->pq.centroids.size() != pq->pq.M * pq->pq.ksub * pq->pq.dsub)
        fail("its product quantizer is inconsistent");
    } else if (!dynamic_cast<const faiss::IndexFlat*>(codes) || codes->code_size != sizeof(float) * map.d) {
      fail("its float storage is inconsistent");
    }
    if (codes->codes.size() != n * codes->code_size) fail("it holds the wrong number of codes");
    const auto& cumulative = graph.cum_nneighbor_per_level;
    if (graph.levels.size() != n || graph.offsets.size() != n + 1 || graph.offsets[0] != 0 || graph.offsets[n] != graph.neighbors.size()) fail("its graph's tables disagree");
    if (n == 0) {
      if (graph.entry_point != -1) fail("its entry point is out of range");
      return;
    }
    if (graph.max_level < 0 || cumulative.size() < static_cast<size_t>(graph.max_level) + 2) fail("its graph's levels are out of range");
    for (size_t i = 1; i < cumulative.size(); i++)
      if (cumulative[i] < cumulative[i - 1]) fail("its graph's levels are out of range");
    for (size_t i = 0; i < n; i++) {
      int levels = graph.levels[i];
      // A removed face may sit above max_level (unlinkRemoved moved the entry point down), unreachable.
      if (levels < 1 || static_cast<size_t>(levels) >= cumulative.size() || graph.offsets[i + 1] - graph.offsets[i] != static_cast<size_t>(cumulative[levels])) fail("a face's links are out of range");
    }
    for (faiss::HNSW::storage_idx_t neighbour : graph.neighbors)
      if (neighbour < -1 || neighbour >= static_cast<faiss::HNSW::storage_idx_t>(n)) fail("a link points outside the index");
    if (graph.entry_point < 0 || static_cast<size_t>(graph.entry_point) >= n || graph.levels[graph.entry_point] != graph.max_level + 1)
      fail("its entry point is out of range");
    // FAISS always writes 1 (greedy descent of the upper levels); any other value sizes a search's buffers
    // (a huge one throws bad_alloc inside FAISS's OpenMP region, an abort; 0 reads outside them).
    if (graph.upper_beam != 1) fail("its graph's upper beam is not 1");
  }

  // Throws unless the file is laid out as save() writes it (FAISS 1.7.3: IxMp over IHNp/IHNf over IxPq/IxF2, then
  // the labels) with every length it declares fitting in the bytes left, and a product quantizer of 8-bit codes of
  // at most MAX_DIMENSIONS dimensions in at most MAX_SUB_QUANTIZERS parts. Run before read_index, which believes
  // each length it reads (up to 2^40 entries) and zero-fills that much memory before finding the file too short,
  // and sizes the codebooks (dimensions × 2^bits floats) and the symmetric-distance table from the quantizer's
  // numbers: one flipped byte in a size field made a load take tens of GB (an OOM kill, at every start, since
  // workers load the newest file). Reads only the headers and the length fields, seeking past the data.
  static constexpr uint64_t MAX_DIMENSIONS = 4096;
  static constexpr uint64_t MAX_SUB_QUANTIZERS = 256;

  static void CheckLayout(const std::string& path) {
    auto fail = [&path](const std::string& what) { throw std::runtime_error(path + " is corrupt: " + what); };
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) throw std::runtime_error(path + ": " + std::strerror(errno));
    if (std::fseek(file.get(), 0, SEEK_END) != 0) fail("it cannot be sized");
    const long size = std::ftell(file.get());
    if (size < 0 || std::fseek(file.get(), 0, SEEK_SET) != 0) fail("it cannot be sized");
    uint64_t at = 0;
    auto read = [&](void* into, size_t bytes) {
      if (std::fread(into, 1, bytes, file.get()) != bytes) fail("it ends early");
      at += bytes;
    };
    auto fourcc = [&]() {
      char tag[5] = {0};
      read(tag, 4);
      return std::string(tag);
    };
    // d (int32), ntotal (int64), two unused int64, is_trained (byte), metric (int32; a float follows above 1).
    auto header = [&]() {
      int32_t d;
      read(&d, sizeof d);
      if (d <= 0 || static_cast<uint64_t>(d) > MAX_DIMENSIONS) fail("its dimensions are out of range");
      char skip[8 * 3 + 1];
      read(skip, sizeof skip);
      int32_t metric;
      read(&metric, sizeof metric);
      if (metric > 1) {
        float arg;
        read(&arg, sizeof arg);
      }
      return static_cast<uint64_t>(d);
    };
    // A length-prefixed vector of `element`-byte entries: its length must fit in what is left; the data is skipped.
    auto vector = [&](uint64_t element) {
      uint64_t count;
      read(&count, sizeof count);
      if (count > (static_cast<uint64_t>(size) - at) / element) fail("a table is longer than the file");
      if (std::fseek(file.get(), static_cast<long>(count * element), SEEK_CUR) != 0) fail("it ends early");
      at += count * element;
      return count;
    };
    if (fourcc() != "IxMp") fail("it is not a face index (IDMap)");
    const uint64_t d = header();
    const std::string graph = fourcc();
    if (graph != "IHNp" && graph != "IHNf") fail("it is not a face index (HNSW)");
    if (header() != d) fail("its dimensions disagree");
    vector(sizeof(double));   // assign_probas
    vector(sizeof(int));      // cum_nneighbor_per_level
    vector(sizeof(int));      // levels
    vector(sizeof(size_t));   // offsets
    vector(sizeof(int32_t));  // neighbors
    char graphTail[5 * 4];    // entry point, max level, ef construction, ef search, upper beam
    read(graphTail, sizeof graphTail);
    const std::string storage = fourcc();
    if (graph == "IHNp") {
      if (storage != "IxPq" || header() != d) fail("its storage is not the PQ codes it should be");
      uint64_t pq[3];  // d, M, nbits
      read(pq, sizeof pq);
      if (pq[0] != d || pq[2] != 8 || pq[1] == 0 || pq[1] > MAX_SUB_QUANTIZERS || d % pq[1] != 0) fail("its product quantizer is inconsistent");
      if (d * 256 * sizeof(float) > static_cast<uint64_t>(size) - at) fail("its product quantizer is longer than the file");
      vector(sizeof(float));  // centroids
      vector(1);              // codes
      char pqTail[4 + 1 + 4];  // search type, encode signs, polysemous threshold
      read(pqTail, sizeof pqTail);
    } else {
      if (storage != "IxF2" || header() != d) fail("its storage is not the float vectors it should be");
      vector(sizeof(float));  // the vectors, counted in floats
    }
    vector(sizeof(idx_t));  // labels
    if (at != static_cast<uint64_t>(size)) fail("it has bytes after its labels");
  }

  // FacePqIndex.load(path): Promise<FacePqIndex> (read whole into memory; FAISS cannot map an HNSW index).
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Object wrapper = constructor_->New({});
    FacePqIndex* self = FacePqIndex::Unwrap(wrapper);
    std::string path = info[0].As<Napi::String>();
    auto* loaded = new std::unique_ptr<faiss::IndexIDMap>();
    return self->Background(
        info.Env(), true,
        [loaded, path]() {
          CheckLayout(path);
          std::unique_ptr<faiss::Index> read(faiss::read_index(path.c_str()));
          auto* map = dynamic_cast<faiss::IndexIDMap*>(read.get());
          if (!map || !dynamic_cast<faiss::IndexHNSW*>(map->index)) throw std::runtime_error(path + " is not a face index (IDMap over HNSW)");
          CheckStructure(*map, path);
          read.release();
          // read_index makes the 8 MB table of symmetric distances for an IndexHNSWPQ; only add() uses it (and
          // makes it again when needed), so an index loaded to be searched does not keep it.
          if (auto* pq = dynamic_cast<faiss::IndexPQ*>(static_cast<faiss::IndexHNSW*>(map->index)->storage)) std::vector<float>().swap(pq->pq.sdc_table);
          loaded->reset(map);
        },
        [self, loaded, held = std::make_shared<Napi::ObjectReference>(Napi::Persistent(wrapper))](Napi::Env) -> Napi::Value {
          self->index_ = std::move(*loaded);
          delete loaded;
          self->dimensions_ = self->index_->d;
          idx_t last = -1;
          for (idx_t label : self->index_->id_map) {
            if (seqOf(label) <= last) self->sorted_ = false;
            last = seqOf(label);
            self->removed_ += label < 0;
          }
          return held->Value();
        });
  }

  // release(): frees the native memory now.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    releasePending_ = index_ != nullptr;
    ReleaseIfDue();
    return info.Env().Undefined();
  }

  // stats(): { total, removed, dimensions, compressed, codeSize, entryLabel } (total includes removed faces;
  // entryLabel: the label of the node searches start from, -1 when empty).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    auto out = Napi::Object::New(info.Env());
    if (!index_ || releasePending_) return out;
    Check(info.Env(), false);
    out.Set("total", static_cast<double>(index_->ntotal));
    out.Set("removed", static_cast<double>(removed_));
    out.Set("dimensions", dimensions_);
    out.Set("compressed", compressed());
    out.Set("codeSize", static_cast<double>(dynamic_cast<faiss::IndexFlatCodes*>(hnsw()->storage)->code_size));
    auto entry = hnsw()->hnsw.entry_point;
    out.Set("entryLabel", entry < 0 ? -1.0 : static_cast<double>(index_->id_map[entry]));
    return out;
  }
};

Napi::FunctionReference* FacePqIndex::constructor_ = nullptr;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // OpenMP's thread count is a per-thread setting: the JS thread, which only runs single-query searches, gets
  // one (FAISS otherwise wakes a team of every core for each query); builds on libuv's threads keep all cores.
  omp_set_num_threads(1);
  return FacePqIndex::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(faiss_face_index, Init)
