"""Device-run shim, never shipped: the SimpleITK wheel (53 MB) does not fit the device
transfer limit beside the tree. Phantoms need only Gaussian smoothing; scipy's
gaussian_filter stands in for SimpleITK's recursive (Deriche) approximation, so the
phantoms differ slightly from the real ones: use the device run for timings only."""
import numpy as np
from scipy import ndimage


class Image:
    def __init__(self, array, spacing=None):
        self.array = np.asarray(array)
        self.spacing = spacing or (1.0,) * self.array.ndim

    def SetSpacing(self, spacing):
        self.spacing = tuple(spacing)


def GetImageFromArray(array, isVector=False):
    return Image(array)


def GetArrayFromImage(image):
    return image.array


def SmoothingRecursiveGaussian(image, sigma):
    # sitk's sigma is (x, y, z) physical with spacing 1; numpy order is (z, y, x)
    sigma = np.broadcast_to(np.asarray(sigma, float), (image.array.ndim,)) / np.asarray(image.spacing)
    sigma = sigma[::-1]
    return Image(ndimage.gaussian_filter(image.array.astype(np.float32), sigma, mode="mirror"))


def __getattr__(name):
    raise AttributeError(f"SimpleITK shim: {name} is not available on the device run")
