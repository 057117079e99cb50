/* kf_vk_copy_params.h — the push-constant block of copy.comp, shared by the shader and the Vulkan
 * backend (the copy is Vulkan-internal, so it is not in kernels_src/common/kf_params.h). */
#ifndef KF_VK_COPY_PARAMS_H_
#define KF_VK_COPY_PARAMS_H_

#include "kernels_src/common/kf_params.h"

struct kf_vk_copy_params {
  KF_P_ADDR src;   /* device address, aligned to the word size */
  KF_P_ADDR dst;   /* device address, aligned to the word size */
  KF_P_I64 words;  /* words to copy */
};

#endif /* KF_VK_COPY_PARAMS_H_ */
