"""A goal-conditioned point env with Dict observations, like Minari's PointMaze/AntMaze sets."""

import gymnasium as gym
import numpy as np


class DictPointEnv(gym.Env):
    def __init__(self):
        box = gym.spaces.Box(-10.0, 10.0, (2,), np.float64)
        self.observation_space = gym.spaces.Dict(
            {"observation": box, "desired_goal": box, "achieved_goal": box})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self):
        return {"observation": self.pos.copy(), "desired_goal": self.goal.copy(),
                "achieved_goal": self.pos.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = np.array([5.0, 5.0])
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = self.pos + np.asarray(action, np.float64)
        self.t += 1
        return self._obs(), -float(np.linalg.norm(self.pos - self.goal)), False, self.t >= 10, {}


gym.register("TestDictPoint-v0", entry_point="dict_env:DictPointEnv")
