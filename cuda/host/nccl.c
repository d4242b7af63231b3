/* Collectives: the host build has no NCCL; its process group lives in lib/dist/ (TypeScript). */
#include "host.h"

static int no_nccl(const char* kernel) {
  return vs_fail(VS_ERR_UNSUPPORTED,
                 "%s: NCCL needs the CUDA build (libvswift_cuda.so); the host build uses the process group in "
                 "lib/dist/",
                 kernel);
}

int vs_nccl_available(void) {
  return 0;
}

int vs_nccl_unique_id(uint8_t* id) {
  return no_nccl("vs_nccl_unique_id");
}

int vs_nccl_comm_init(void** comm, int nranks, const uint8_t* id, int rank) {
  return no_nccl("vs_nccl_comm_init");
}

int vs_nccl_comm_destroy(void* comm) {
  return no_nccl("vs_nccl_comm_destroy");
}

int vs_nccl_all_reduce(void* comm, int dtype, int64_t count, const void* send, void* recv, int op,
                       vs_stream stream) {
  return no_nccl("vs_nccl_all_reduce");
}

int vs_nccl_broadcast(void* comm, int dtype, int64_t count, const void* send, void* recv, int root,
                      vs_stream stream) {
  return no_nccl("vs_nccl_broadcast");
}

int vs_nccl_group_start(void) {
  return no_nccl("vs_nccl_group_start");
}

int vs_nccl_group_end(void) {
  return no_nccl("vs_nccl_group_end");
}
