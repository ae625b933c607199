"""Contact forces that hold a grasped object still: static equilibrium inside linearized friction cones.

Each contact pushes along its inward surface normal plus friction; the cone |f_t| <= mu f_n is replaced by a polygon
of edges inscribed in it, so every non-negative mix of edges lies inside the true cone. Non-negative least squares
(scipy) finds edge weights whose net force and torque cancel gravity; what cannot be cancelled is the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

GRAVITY = 9.81  # m/s^2


@dataclass(kw_only=True, slots=True)
class ForceConfig:
    """Friction model and solver settings."""

    friction: float = 0.8
    """Coulomb friction coefficient mu between skin and object (0.5-1.0 is typical for skin)."""
    cone_edges: int = 8
    """Edges of the polygon that approximates each friction cone."""
    regularization: float = 1e-3
    """Weight of the squared edge weights, so the solver picks small forces among the equilibria."""
    stable_tolerance: float = 0.05
    """A grasp holds when the residual force is below this share of the object's weight (torque likewise)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.friction <= 3.0:
            raise ValueError(f"ForceConfig.friction must be in [0, 3], got {self.friction}")
        if not 3 <= self.cone_edges <= 64:
            raise ValueError(f"ForceConfig.cone_edges must be in [3, 64], got {self.cone_edges}")
        if not 0.0 <= self.regularization <= 1.0:
            raise ValueError(f"ForceConfig.regularization must be in [0, 1], got {self.regularization}")
        if not 0.0 < self.stable_tolerance <= 1.0:
            raise ValueError(f"ForceConfig.stable_tolerance must be in (0, 1], got {self.stable_tolerance}")


@dataclass(kw_only=True)
class ForceSolution:
    """Forces at the contacts and how well they hold the object."""

    forces: np.ndarray  # (C, 3) newtons applied by the hand to the object
    force_residual: float  # |sum f + m g|, newtons
    torque_residual: float  # |sum (p - com) x f|, newton metres
    stable: bool  # both residuals within tolerance of the weight (and weight x lever)


def _tangent_basis(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents per normal, (C, 3) each."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = np.cross(normals, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normals, t1)
    return t1, t2


def _cone_edges(normals: np.ndarray, friction: float, count: int) -> np.ndarray:
    """(C, E, 3) unit edges on the boundary of each unit normal's (C, 3) friction cone, E = `count`: their
    non-negative mixes stay inside the cone."""
    t1, t2 = _tangent_basis(normals)
    angles = 2 * np.pi * np.arange(count) / count
    edges = normals[:, None] + friction * (
        np.cos(angles)[None, :, None] * t1[:, None] + np.sin(angles)[None, :, None] * t2[:, None]
    )
    edges /= np.linalg.norm(edges, axis=2, keepdims=True)
    return edges


def solve_contact_forces(
    points: np.ndarray,
    normals: np.ndarray,
    center_of_mass: np.ndarray,
    mass: float,
    gravity_dir: np.ndarray,
    config: ForceConfig | None = None,
) -> ForceSolution:
    """Forces at contacts that hold an object of `mass` against gravity.

    Args:
        points: (C, 3) contact points, metres.
        normals: (C, 3) unit normals pointing INTO the object (the direction the hand pushes).
        center_of_mass: (3,) metres, same frame.
        mass: kilograms.
        gravity_dir: (3,) unit vector of gravity in the same frame.
        config: friction and solver settings.

    Returns:
        ForceSolution with forces in the frame of the inputs.
    """
    cfg = config or ForceConfig()
    points = np.asarray(points, np.float64).reshape(-1, 3)
    normals = np.asarray(normals, np.float64).reshape(-1, 3)
    weight = mass * GRAVITY * np.asarray(gravity_dir, np.float64)  # (3,) newtons
    num = len(points)
    lever = np.max(np.linalg.norm(points - center_of_mass, axis=1)) if num else 1.0
    lever = max(lever, 1e-3)
    if num == 0:
        res = float(np.linalg.norm(weight))
        return ForceSolution(forces=np.zeros((0, 3)), force_residual=res, torque_residual=0.0, stable=False)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    if not np.all(lengths > 1e-9) or not np.all(np.isfinite(points)):
        raise ValueError("solve_contact_forces needs finite points and non-zero normals")
    normals = normals / lengths
    edges = _cone_edges(normals, cfg.friction, cfg.cone_edges)  # (C, E, 3)
    arms = (points - center_of_mass)[:, None, :]  # (C, 1, 3)
    torques = np.cross(arms, edges) / lever  # scaled to newtons so both rows weigh alike
    wrench = np.concatenate([edges, torques], axis=2).reshape(num * cfg.cone_edges, 6).T  # (6, C*E)
    target = np.concatenate([-weight, np.zeros(3)])
    scale = max(mass * GRAVITY, 1e-6)
    reg = np.sqrt(cfg.regularization) * np.eye(wrench.shape[1])
    # Solve in units of the weight, so the regularization means the same for a 30 g and a 3 kg object.
    lhs = np.concatenate([wrench, reg], axis=0)
    rhs = np.concatenate([target / scale, np.zeros(wrench.shape[1])])
    coeffs, _ = nnls(lhs, rhs, maxiter=50 * wrench.shape[1])
    coeffs *= scale
    forces = (coeffs.reshape(num, cfg.cone_edges, 1) * edges).sum(axis=1)  # (C, 3)
    net_force = forces.sum(0) + weight
    net_torque = np.cross(points - center_of_mass, forces).sum(0)
    force_res = float(np.linalg.norm(net_force))
    torque_res = float(np.linalg.norm(net_torque))
    tol = cfg.stable_tolerance * mass * GRAVITY
    stable = force_res <= tol and torque_res <= tol * lever
    return ForceSolution(forces=forces, force_residual=force_res, torque_residual=torque_res, stable=bool(stable))
