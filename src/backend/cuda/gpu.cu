// Device discovery, memory, streams and copies.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cuda/gpu_impl.cuh"
#include "core/quant_blocks.h"

namespace sluice::cuda {

void fail_cuda(const char* what, cudaError_t e, const char* file, int line) {
    fail(std::string("CUDA error: ") + cudaGetErrorString(e) + " (" + what + " at " + file + ":" +
         std::to_string(line) + ")");
}

void fail_cublas(const char* what, cublasStatus_t s, const char* file, int line) {
    fail(std::string("cuBLAS error: ") + cublas().status_string(s) + " (" + what + " at " + file +
         ":" + std::to_string(line) + ")");
}

bool available(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
        cudaGetLastError();  // clear the sticky error
        return false;
    }
    return true;
}

DeviceInfo device_info() {
    int dev = 0;
    SLUICE_CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp p{};
    SLUICE_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
    DeviceInfo d;
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.n_sm = p.multiProcessorCount;
    size_t free_b = 0, total_b = 0;
    SLUICE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    d.free_bytes = free_b;
    d.total_bytes = total_b;
    return d;
}

template <MemKind K>
Buffer<K>::Buffer(size_t bytes) : n_(bytes) {
    if (bytes == 0) return;
    const cudaError_t e =
        K == MemKind::Device ? cudaMalloc(&p_, bytes) : cudaMallocHost(&p_, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        p_ = nullptr;
        fail("CUDA: cannot allocate " + std::to_string(bytes >> 20) + " MiB of " +
             (K == MemKind::Device ? "device" : "pinned host") + " memory (" +
             cudaGetErrorString(e) + ")");
    }
}

template <MemKind K>
void Buffer<K>::release() noexcept {
    if (!p_) return;
    if (K == MemKind::Device)
        cudaFree(p_);
    else
        cudaFreeHost(p_);
    p_ = nullptr;
}

template class Buffer<MemKind::Device>;
template class Buffer<MemKind::Pinned>;

HostRegistration::HostRegistration(const void* p, size_t n) : p_(const_cast<void*>(p)) {
    const cudaError_t e = cudaHostRegister(p_, n, cudaHostRegisterReadOnly);
    ok_ = e == cudaSuccess;
    if (!ok_) {
        error_ = cudaGetErrorString(e);
        cudaGetLastError();
    }
}

HostRegistration::~HostRegistration() {
    if (ok_) cudaHostUnregister(p_);
}

void Gpu::Impl::reserve(DeviceBuffer& b, size_t bytes) {
    if (b.size() >= bytes) return;
    // cudaFree waits for queued kernels that may still read the old buffer.
    const size_t grown = std::max(bytes, b.size() * 2);
    b = DeviceBuffer();
    b = DeviceBuffer(grown);
}

Gpu::Gpu() : p_(std::make_unique<Impl>()) {
    std::string why;
    if (!available(&why)) fail("CUDA backend: " + why);
    SLUICE_CUDA_CHECK(cudaStreamCreateWithFlags(&p_->compute, cudaStreamNonBlocking));
    SLUICE_CUDA_CHECK(cudaStreamCreateWithFlags(&p_->side, cudaStreamNonBlocking));
    SLUICE_CUDA_CHECK(cudaEventCreateWithFlags(&p_->side_done, cudaEventDisableTiming));
    for (cudaEvent_t& e : p_->side_mark)
        SLUICE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    p_->rope_fuse = env_flag("SLUICE_GPU_ROPE_FUSE", true);
    p_->done = DeviceBuffer(sizeof(int));
    SLUICE_CUDA_CHECK(cudaMemset(p_->done.data(), 0, sizeof(int)));
    p_->attn_part = DeviceBuffer((size_t)kAttnMaxHeads * kAttnSplits * (kAttnMaxVd + 2) * 4);
    p_->attn_done = DeviceBuffer((size_t)kAttnMaxHeads * sizeof(int));
    SLUICE_CUDA_CHECK(cudaMemset(p_->attn_done.data(), 0, p_->attn_done.size()));
    p_->fused = env_flag("SLUICE_GPU_FUSED", false);
    if (p_->fused && env_flag("SLUICE_GPU_FUSED_TRACE", false)) {
        p_->fused_trace = DeviceBuffer(kFusedTraceWords * sizeof(unsigned long long));
        SLUICE_CUDA_CHECK(cudaMemset(p_->fused_trace.data(), 0, p_->fused_trace.size()));
    }
    p_->grid_bar = DeviceBuffer(2 * sizeof(unsigned));
    SLUICE_CUDA_CHECK(cudaMemset(p_->grid_bar.data(), 0, p_->grid_bar.size()));
    SLUICE_CUBLAS_CHECK(cublas().create(&p_->blas));
    SLUICE_CUBLAS_CHECK(cublas().set_stream(p_->blas, p_->compute));
}

Gpu::~Gpu() {
    if (p_->compute) cudaStreamSynchronize(p_->compute);
    if (p_->side) cudaStreamSynchronize(p_->side);
    if (p_->fused_trace.size()) print_fused_trace(*p_);
    if (p_->blas) cublas().destroy(p_->blas);
    if (p_->side_done) cudaEventDestroy(p_->side_done);
    for (cudaEvent_t e : p_->side_mark)
        if (e) cudaEventDestroy(e);
    if (p_->side) cudaStreamDestroy(p_->side);
    if (p_->compute) cudaStreamDestroy(p_->compute);
}

void Gpu::sync() {
    SLUICE_CUDA_CHECK(cudaStreamSynchronize(p_->compute));
}

void Gpu::upload(void* dst, const void* src, size_t n) {
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, p_->compute));
    sync();
}

// Q8_0 rows of whole 8-block groups go up regrouped (Q8_0_G8): +7.6% decode on an H100
// (docs/benchmarks.md, session 21). SLUICE_GPU_Q8G8=0 keeps the file layout, for comparisons.
DType Gpu::upload_matrix(void* dst, const TensorView& w) {
    static const bool g8 = env_flag("SLUICE_GPU_Q8G8", true);
    if (g8 && w.dtype == DType::Q8_0 && w.cols() % (8 * QK8_0) == 0 && ((uintptr_t)dst & 15) == 0) {
        std::vector<block_q8_0_g8> g(w.nbytes() / sizeof(block_q8_0_g8));
        regroup_q8_0_g8((const block_q8_0*)w.data, g.data(), (int64_t)g.size());
        upload(dst, g.data(), w.nbytes());
        return DType::Q8_0_G8;
    }
    upload(dst, w.data, w.nbytes());
    return w.dtype;
}

void Gpu::upload_async(void* dst, const void* src, size_t n) {
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, p_->compute));
}

void Gpu::download(void* dst, const void* src, size_t n) {
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, p_->compute));
    sync();
}

void Gpu::copy(void* dst, const void* src, size_t n) {
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, p_->compute));
}

void Gpu::copy_h2d_side(void* dst, const void* src, size_t n) {
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, p_->side));
}

void Gpu::wait_copies() {
    SLUICE_CUDA_CHECK(cudaEventRecord(p_->side_done, p_->side));
    SLUICE_CUDA_CHECK(cudaStreamWaitEvent(p_->compute, p_->side_done, 0));
}

void Gpu::sync_copies() {
    SLUICE_CUDA_CHECK(cudaStreamSynchronize(p_->side));
}

Graph::~Graph() {
    if (exec_) cudaGraphExecDestroy((cudaGraphExec_t)exec_);
}

void Gpu::begin_capture() {
    SLUICE_CUDA_CHECK(cudaStreamBeginCapture(p_->compute, cudaStreamCaptureModeThreadLocal));
}

void Gpu::end_capture(Graph& g) {
    cudaGraph_t graph = nullptr;
    SLUICE_CUDA_CHECK(cudaStreamEndCapture(p_->compute, &graph));
    if (g.exec_) cudaGraphExecDestroy((cudaGraphExec_t)g.exec_);
    g.exec_ = nullptr;
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    SLUICE_CUDA_CHECK(e);
    g.exec_ = exec;
}

void Gpu::launch(const Graph& g) {
    SLUICE_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)g.exec_, p_->compute));
}

void Gpu::mark_side(int i) {
    SLUICE_CUDA_CHECK(cudaEventRecord(p_->side_mark[i], p_->side));
}

int device_attribute(cudaDeviceAttr a) {
    int dev = 0, v = 0;
    SLUICE_CUDA_CHECK(cudaGetDevice(&dev));
    SLUICE_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, dev));
    return v;
}

bool env_flag(const char* name, bool dflt) {
    const char* e = std::getenv(name);
    return e && *e ? *e != '0' : dflt;
}

bool pdl_on() {
    static const bool on = env_flag("SLUICE_GPU_PDL", true) &&
                           device_attribute(cudaDevAttrComputeCapabilityMajor) >= 9;
    return on;
}

void Gpu::wait_side_mark(int i) {
    SLUICE_CUDA_CHECK(cudaEventSynchronize(p_->side_mark[i]));
}

namespace {

template <typename F>
double median_seconds(cudaStream_t s, int reps, F&& f) {
    cudaEvent_t a, b;
    SLUICE_CUDA_CHECK(cudaEventCreate(&a));
    SLUICE_CUDA_CHECK(cudaEventCreate(&b));
    f();  // warm-up
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
        SLUICE_CUDA_CHECK(cudaEventRecord(a, s));
        f();
        SLUICE_CUDA_CHECK(cudaEventRecord(b, s));
        SLUICE_CUDA_CHECK(cudaEventSynchronize(b));
        float t = 0;
        SLUICE_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2] / 1000.0;
}

}  // namespace

double Gpu::measure_h2d(size_t bytes) {
    PinnedBuffer h(bytes);
    DeviceBuffer d(bytes);
    std::memset(h.data(), 1, bytes);
    const double s = median_seconds(p_->compute, 5, [&] {
        SLUICE_CUDA_CHECK(
            cudaMemcpyAsync(d.data(), h.data(), bytes, cudaMemcpyHostToDevice, p_->compute));
    });
    return (double)bytes / s;
}

double Gpu::measure_d2d(size_t bytes) {
    DeviceBuffer a(bytes), b(bytes);
    SLUICE_CUDA_CHECK(cudaMemsetAsync(a.data(), 1, bytes, p_->compute));
    const double s = median_seconds(p_->compute, 5, [&] {
        SLUICE_CUDA_CHECK(
            cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, p_->compute));
    });
    return 2.0 * (double)bytes / s;
}

}  // namespace sluice::cuda
